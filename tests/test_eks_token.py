"""Issue 11 point 7: the EKS token from botocore, no AWS CLI, checked against the format EKS accepts.

Format (kubernetes-sigs/aws-iam-authenticator pkg/token/token.go; aws-cli awscli/customizations/eks/
get_token.py): "k8s-aws-v1." + unpadded base64url of a presigned STS GetCallerIdentity URL whose signed
headers include x-k8s-aws-id: <cluster>. The signature is recomputed here from the SigV4 spec. (moto's server
cannot answer a presigned GET: it routes unsigned-header requests by their body, so it would answer as S3.)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import yaml

from mlops_cli.adapters import eks_token


@pytest.fixture
def credentials(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def test_token_is_a_presigned_get_caller_identity_for_the_cluster(credentials):
    bearer = eks_token.token("mlops", "eu-west-1")
    assert bearer.startswith("k8s-aws-v1.") and "=" not in bearer
    assert re.fullmatch(r"k8s-aws-v1\.[A-Za-z0-9_-]+", bearer)  # base64url: no + or /
    url = urlsplit(eks_token.presigned_url(bearer))
    assert url.scheme == "https" and url.netloc == "sts.eu-west-1.amazonaws.com"
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert query["Action"] == "GetCallerIdentity" and query["Version"] == "2011-06-15"
    assert query["X-Amz-Expires"] == "60"
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert "x-k8s-aws-id" in query["X-Amz-SignedHeaders"].split(";")
    assert query["X-Amz-Credential"].startswith("AKIAIOSFODNN7EXAMPLE/") and "/eu-west-1/sts/" in query["X-Amz-Credential"]


def _sigv4_query_signature(url: str, headers: dict[str, str], secret: str) -> str:
    """SigV4 for a presigned GET, written out from the AWS spec ("Create a signed AWS API request",
    query-string authentication) independently of botocore: what STS recomputes to accept the token."""
    parts = urlsplit(url)
    params = sorted((k, v[0]) for k, v in parse_qs(parts.query).items() if k != "X-Amz-Signature")
    query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in params)
    q = dict(params)
    signed = q["X-Amz-SignedHeaders"].split(";")
    all_headers = {"host": parts.netloc, **{k.lower(): v for k, v in headers.items()}}
    canonical_headers = "".join(f"{h}:{all_headers[h].strip()}\n" for h in signed)
    canonical = "\n".join(["GET", parts.path or "/", query, canonical_headers, ";".join(signed),
                           hashlib.sha256(b"").hexdigest()])
    _, date, region, service, terminator = q["X-Amz-Credential"].split("/")
    to_sign = "\n".join(["AWS4-HMAC-SHA256", q["X-Amz-Date"], f"{date}/{region}/{service}/{terminator}",
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, terminator):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def test_signature_covers_the_cluster_header(credentials):
    url = eks_token.presigned_url(eks_token.token("mlops", "us-east-1"))
    signature = parse_qs(urlsplit(url).query)["X-Amz-Signature"][0]
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    assert _sigv4_query_signature(url, {"x-k8s-aws-id": "mlops"}, secret) == signature
    # Replayed for another cluster, STS would compute another signature and refuse it.
    assert _sigv4_query_signature(url, {"x-k8s-aws-id": "other"}, secret) != signature


def test_no_credentials_is_a_clear_preflight_error(monkeypatch, tmp_path):
    from mlops_cli.common.errors import PreflightError

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    with pytest.raises(PreflightError, match="no AWS credentials"):
        eks_token.token("mlops", "us-east-1")


def test_cli_prints_an_exec_credential(cli, credentials):
    result = cli("eks-token", "--cluster", "mlops", "--region", "us-east-1")
    assert result.exit_code == 0, result.stderr
    cred = json.loads(result.stdout)
    assert cred["kind"] == "ExecCredential" and cred["apiVersion"] == "client.authentication.k8s.io/v1beta1"
    expires = datetime.strptime(cred["status"]["expirationTimestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert timedelta(minutes=13) < expires - datetime.now(timezone.utc) <= timedelta(minutes=14)
    assert cred["status"]["token"].startswith("k8s-aws-v1.")


def test_the_kubernetes_client_runs_our_plugin_without_an_aws_cli(credentials, tmp_path, monkeypatch):
    """The kubeconfig `up` writes, loaded by the Kubernetes Python client (what the install and `down` use)."""
    from kubernetes import client, config

    mlops = Path(os.environ.get("VIRTUAL_ENV", "")) / "bin" / "mlops"
    mlops = mlops if mlops.is_file() else Path(eks_token.mlops_command())
    if not mlops.is_file():
        pytest.skip("no mlops executable next to this interpreter or on PATH")
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no `aws` anywhere
    assert shutil.which("aws") is None
    from tests.eks_support import pulumi_eks_kubeconfig

    kubeconfig = eks_token.with_token_command(pulumi_eks_kubeconfig("mlops"), "mlops", "us-east-1", command=str(mlops))
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=cfg)
    assert cfg.host == "https://EXAMPLE.gr7.us-east-1.eks.amazonaws.com"
    assert cfg.api_key["BearerToken"].startswith("Bearer k8s-aws-v1.")


def test_written_kubeconfig_calls_this_machines_mlops(tmp_path):
    from mlops_cli.targets.eks import write_kubeconfig
    from tests.eks_support import pulumi_eks_kubeconfig

    elsewhere = eks_token.with_token_command(pulumi_eks_kubeconfig("mlops"), "mlops", "us-east-1",
                                             command="/home/someone-else/.venv/bin/mlops")
    path = write_kubeconfig(tmp_path / "kubeconfig", json.dumps(elsewhere))
    [user] = json.loads(path.read_text())["users"]
    assert user["user"]["exec"]["command"] == eks_token.mlops_command()
    assert user["user"]["exec"]["args"][0] == "eks-token"

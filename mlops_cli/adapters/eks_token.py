"""EKS bearer tokens from botocore, and kubeconfigs whose exec plugin asks `mlops` for them.

The token is what `aws eks get-token` and aws-iam-authenticator produce: an STS GetCallerIdentity request,
presigned (60 s) with the header `x-k8s-aws-id: <cluster name>` among the signed headers, its URL
base64url-encoded without padding behind the prefix `k8s-aws-v1.`. The EKS API server replays that URL to
STS to learn who is calling. Sources: kubernetes-sigs/aws-iam-authenticator pkg/token/token.go
(`v1Prefix = "k8s-aws-v1."`, `clusterIDHeader = "x-k8s-aws-id"`, presign expiry 60 s, token valid 15 min)
and aws/aws-cli awscli/customizations/eks/get_token.py (the same through botocore's `before-sign` event).
Producing it here removes the AWS CLI as a dependency of the kubeconfig that `up`, `down` and every later
command use. botocore is imported inside functions (slow to import).
"""

from __future__ import annotations

import base64
import copy
import json
import shutil
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ..common.errors import PreflightError

TOKEN_PREFIX = "k8s-aws-v1."
CLUSTER_ID_HEADER = "x-k8s-aws-id"
PRESIGN_SECONDS = 60
# The API server accepts a token for 15 minutes; kubectl/the Python client re-run the plugin after this.
TOKEN_LIFETIME = timedelta(minutes=14)
EXEC_API_VERSION = "client.authentication.k8s.io/v1beta1"
TOKEN_COMMAND = "eks-token"


def token(cluster_name: str, region: str, *, endpoint_url: str | None = None) -> str:
    import botocore.exceptions
    import botocore.session

    session = botocore.session.get_session()
    if session.get_credentials() is None:
        raise PreflightError("no AWS credentials found for the EKS token",
                             hint="set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    sts = session.create_client("sts", region_name=region,
                                endpoint_url=endpoint_url or f"https://sts.{region}.amazonaws.com")

    def add_cluster_header(request: Any, **_: Any) -> None:
        request.headers[CLUSTER_ID_HEADER] = cluster_name

    sts.meta.events.register("before-sign.sts.GetCallerIdentity", add_cluster_header)
    try:
        url = sts.generate_presigned_url("get_caller_identity", Params={}, ExpiresIn=PRESIGN_SECONDS,
                                         HttpMethod="GET")
    except botocore.exceptions.BotoCoreError as exc:
        raise PreflightError(f"could not sign the EKS token request: {exc}") from None
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def presigned_url(bearer: str) -> str:
    """The STS URL inside a token (what the EKS API server calls)."""
    if not bearer.startswith(TOKEN_PREFIX):
        raise ValueError(f"not an EKS token (no {TOKEN_PREFIX} prefix)")
    body = bearer[len(TOKEN_PREFIX):]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


def exec_credential(cluster_name: str, region: str, *, now: datetime | None = None,
                    endpoint_url: str | None = None) -> dict[str, Any]:
    """What a kubeconfig exec plugin prints (client.authentication.k8s.io ExecCredential)."""
    expires = (now or datetime.now(timezone.utc)) + TOKEN_LIFETIME
    return {"kind": "ExecCredential", "apiVersion": EXEC_API_VERSION, "spec": {},
            "status": {"expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                       "token": token(cluster_name, region, endpoint_url=endpoint_url)}}


def mlops_command() -> str:
    """The `mlops` executable the kubeconfig calls: the one next to this interpreter, else PATH's."""
    beside = Path(sys.executable).with_name("mlops")
    return str(beside) if beside.is_file() else (shutil.which("mlops") or "mlops")


def with_token_command(kubeconfig: str | dict[str, Any], cluster_name: str, region: str,
                       command: str | None = None) -> dict[str, Any]:
    """A kubeconfig whose users run `mlops eks-token` (instead of, say, `aws eks get-token`)."""
    data = json.loads(kubeconfig) if isinstance(kubeconfig, str) else copy.deepcopy(kubeconfig)
    for user in data.get("users") or []:
        user["user"] = {"exec": {
            "apiVersion": EXEC_API_VERSION,
            "command": command or mlops_command(),
            "args": [TOKEN_COMMAND, "--cluster", cluster_name, "--region", region],
            "interactiveMode": "Never",
            "provideClusterInfo": False,
        }}
    return data

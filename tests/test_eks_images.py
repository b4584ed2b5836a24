"""Issue 23 point 1 (and 6's log group): the platform's images are in ECR, by digest, before the install, and
what exists outside the stack is adopted instead of collided with.

`up --target eks` with a FakeWorkspace (tests/eks_support.py) and the conftest `aws` fixture's stand-ins for
the engine and ECR; the ECR and CloudWatch Logs lookups themselves run against moto; the program's adoption
under the mocks, whose account refuses a create of a name that exists (tests/aws_api.py).
"""

from __future__ import annotations

import json

import pytest

from mlops_cli.adapters import container_engine, ecr_images
from mlops_cli.common.errors import PreflightError
from tests.eks_support import OUTPUTS

REGISTRY = OUTPUTS["images_registry"]


def _out(result) -> str:
    return " ".join((result.stdout + result.stderr).split())


def test_without_an_engine_or_pushed_images_up_stops_before_anything_with_two_commands(cli, project, workspace,
                                                                                       monkeypatch):
    def no_engine(preferred=None):
        raise PreflightError("no container engine to build images with (looked for docker buildx, podman, buildah)")

    monkeypatch.setattr(container_engine, "detect", no_engine)
    result = cli("up", "--target", "eks", "--yes")
    out = _out(result)
    assert result.exit_code == 2, out
    assert workspace.calls == []   # no preview, no update: nothing billable was created
    assert f"1. on a machine with docker buildx, podman or buildah (or in CI), in this project: " \
           f"MLOPS_IMAGES__REGISTRY={REGISTRY} mlops images build --push --tag" in out
    assert "2. here: mlops up --target eks" in out and "Nothing was created" in out


def test_up_pushes_the_images_between_the_stack_and_the_install_and_installs_digests(cli, project, workspace, aws,
                                                                                    kubernetes_target, monkeypatch):
    from charts.image_refs import COMPONENTS, image_ref
    from mlops_cli.cloud import images

    real = images.build_images

    def build(config, **kw):
        workspace.calls.append("images push")
        return real(config, **kw)

    monkeypatch.setattr(images, "build_images", build)
    result = cli("up", "--target", "eks", "--yes")
    assert result.exit_code == 0, _out(result)
    calls = workspace.calls
    assert calls.index("up") < calls.index("images push") < calls.index("platform up")
    assert aws["built"] == [(REGISTRY, aws["built"][0][1], True)]
    installed = kubernetes_target["config"]
    for component in COMPONENTS:
        assert image_ref(installed, component).startswith(f"{REGISTRY}/mlops-{component}@sha256:")


def test_images_already_in_ecr_are_installed_by_their_digests_without_a_build(cli, project, workspace, aws,
                                                                              kubernetes_target, monkeypatch):
    from charts.image_refs import image_ref

    digests = {c: f"{REGISTRY}/mlops-{c}@sha256:{'cd' * 32}" for c in ("gateway", "drift", "predictor", "mlflow")}
    monkeypatch.setattr(ecr_images, "pushed_digests", lambda registry, components, tag: dict(digests))
    result = cli("up", "--target", "eks", "--yes")
    assert result.exit_code == 0, _out(result)
    assert aws["built"] == []
    assert image_ref(kubernetes_target["config"], "drift") == digests["drift"]


def test_preview_prints_one_plan_with_the_push_the_autoscaler_chart_and_metrics_server(cli, project, workspace,
                                                                                       monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    result = cli("up", "--target", "eks", "--preview")
    out = _out(result)
    assert result.exit_code == 0, out
    assert "Plan: mlops up --target eks" in out
    assert f"built with docker buildx and pushed to {REGISTRY}" in out
    assert "chart cluster-autoscaler 9.59.1 (app 1.35.0) for Kubernetes 1.35" in out and "metrics-server" in out
    assert out.index("Plan:") < out.index("Pulumi preview") < out.index("Cost ESTIMATE")
    for line in ("PVC volumes (gp3)", "CloudWatch Logs storage", "CloudWatch Logs ingestion", "cross-AZ data transfer"):
        assert line in out, line
    data = json.loads(cli("--json", "up", "--target", "eks", "--preview").stdout)
    assert [row["step"] for row in data["plan"]][:1] == ["1. AWS stack"] and "pushed to" in data["images"]


# ------------------------------------------------------------------------------ adoption (points 1 and 6)


def test_existing_repositories_and_log_group_are_adopted_not_created():
    from mlops_cli.adapters.aws_existing import Existing
    from tests.aws_api import Refused
    from tests.pulumi_mocks import PROJECT, declare_platform

    repo, group = f"{PROJECT}/mlops-gateway", "/aws/eks/mlops/cluster"
    existing = {"aws:ecr/repository:Repository": {repo}, "aws:cloudwatch/logGroup:LogGroup": {group}}
    # What the old program did: create them, which the account refuses.
    with pytest.raises(Refused, match="RepositoryAlreadyExistsException.*|ResourceAlreadyExistsException"):
        declare_platform(existing=existing)
    d = declare_platform(existing=existing, adopt=Existing((repo,), group))
    imported = {r.inputs.get("name"): r.resource_id for r in d.resources if r.resource_id}
    assert imported == {repo: repo, group: group}


@pytest.fixture
def moto(s3_endpoint, monkeypatch):
    import httpx

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    httpx.post(f"{s3_endpoint}/moto-api/reset", timeout=10)
    import botocore.session

    session = botocore.session.get_session()
    return {s: session.create_client(s, region_name="us-east-1") for s in ("ecr", "logs")}


def test_find_reports_what_exists_outside_the_stack(moto):
    from mlops_cli.adapters import aws_existing

    moto["ecr"].create_repository(repositoryName="test-project/mlops-gateway")
    moto["logs"].create_log_group(logGroupName="/aws/eks/mlops/cluster")
    moto["logs"].create_log_group(logGroupName="/aws/eks/mlops/cluster-other")
    found = aws_existing.find("us-east-1", ["test-project/mlops-gateway", "test-project/mlops-drift"],
                              "/aws/eks/mlops/cluster")
    assert found == aws_existing.Existing(("test-project/mlops-gateway",), "/aws/eks/mlops/cluster")
    assert aws_existing.find("us-east-1", [], "/aws/eks/other/cluster").log_group == ""


def test_a_push_creates_the_repositories_and_up_finds_the_pushed_digests(moto):
    registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com/test-project"
    assert ecr_images.pushed_digests(registry, ("gateway", "drift"), "1.0.0") == {}
    assert ecr_images.ensure_repositories(registry, ("gateway", "drift")) == ["test-project/mlops-gateway",
                                                                              "test-project/mlops-drift"]
    assert ecr_images.ensure_repositories(registry, ("gateway",)) == []   # exists: left as it is
    repo = moto["ecr"].describe_repositories(repositoryNames=["test-project/mlops-gateway"])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE" and repo["imageScanningConfiguration"] == {"scanOnPush": True}
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                           "config": {}, "layers": []})
    moto["ecr"].put_image(repositoryName="test-project/mlops-gateway", imageManifest=manifest, imageTag="1.0.0")
    found = ecr_images.pushed_digests(registry, ("gateway", "drift"), "1.0.0")
    assert list(found) == ["gateway"] and found["gateway"].startswith(f"{registry}/mlops-gateway@sha256:")

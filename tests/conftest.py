"""Shared fixtures: every test runs in its own project directory with its own state, never the user's.

Helpers that are not fixtures live in tests/support.py; no test module imports this file.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from .support import AWS_ACCOUNT, CliResult, free_port, minilm_dir, moto_server_binary


def _isolate(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MLOPS_*/MLFLOW_* from the developer's shell leaks in; nothing downloads from a hub."""
    for name in list(os.environ):
        if name.startswith(("MLOPS_", "MLFLOW_")) or name in {"KUBECONFIG", "PULUMI_CONFIG_PASSPHRASE"}:
            monkeypatch.delenv(name, raising=False)
    # botocore would otherwise probe the EC2 metadata address (off loopback) when no credentials are set.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("NO_COLOR", "1")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch):
    _isolate(monkeypatch)


@pytest.fixture(scope="module", autouse=True)
def _isolated_module_env():
    """Module-scoped fixtures are set up before the per-test isolation above runs, so without this they
    would see what an earlier module's test left in os.environ (MLflow sets MLFLOW_TRACKING_URI)."""
    with pytest.MonkeyPatch.context() as mp:
        _isolate(mp)
        yield


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """An empty project directory with a minimal mlops.toml, as the working directory."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "mlops.toml").write_text('[project]\nname = "test-project"\n')
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def cli(capsys):
    """Run `mlops ...` in-process and capture its exit code and output."""
    from mlops_cli.cli.app import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def tiny_base_model(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer BERT with MiniLM's tokenizer: trains in seconds, loads offline."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    out = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def registered(tmp_path_factory, tiny_base_model):
    """One project per session with a tiny model registered and its drift reference attached (the
    expensive part: built once, shared read-only by the drift and observability tests)."""
    from .drift_support import registered_project

    # pytest sets a session fixture up before the requesting test's function-scoped ones, so the
    # per-test isolation has not yet undone what an earlier test left in os.environ (MLflow's URI).
    with pytest.MonkeyPatch.context() as mp:
        _isolate(mp)
        return registered_project(tmp_path_factory, tiny_base_model)


@pytest.fixture(scope="session")
def reference(registered):
    """The drift reference stored with the registered version (a DataFrame; do not change it)."""
    from .drift_support import load_registered_reference

    return load_registered_reference(registered)


@pytest.fixture
def aws(tmp_path, monkeypatch, project):
    """A Pulumi CLI on PATH (a stand-in: the workspace is substituted), a passphrase, an AWS identity, an
    egress address, and the offline bundle of upstream manifests the capacity check renders (the EKS
    CLI and capacity tests share it)."""
    from mlops_cli.adapters import pulumi_aws_account

    from .upstream_bundle import build_bundle, kubernetes_toml

    pins = build_bundle(tmp_path / "bundle")
    with (project / "mlops.toml").open("a") as fh:
        fh.write(kubernetes_toml(tmp_path / "bundle", pins))
    monkeypatch.setattr(pulumi_aws_account, "egress_address", lambda: "198.51.100.23")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "pulumi"
    fake.write_text("#!/bin/sh\necho 'not the real pulumi' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "test-passphrase")
    monkeypatch.setattr(pulumi_aws_account, "caller_identity", lambda region: pulumi_aws_account.AwsIdentity(
        AWS_ACCOUNT, f"arn:aws:iam::{AWS_ACCOUNT}:user/dev", region, "env"))
    state = {"has_data": False, "emptied": [], "built": []}
    # The images: none in ECR yet, a container engine that answers, a build that "pushes" (records digests).
    from mlops_cli.adapters import aws_existing, container_engine, ecr_images
    from mlops_cli.cloud import images

    monkeypatch.setattr(ecr_images, "pushed_digests", lambda registry, components, tag: {})
    monkeypatch.setattr(aws_existing, "find", lambda region, repositories, log_group: aws_existing.Existing())
    monkeypatch.setattr(container_engine, "detect", lambda preferred=None: container_engine.Engine(
        "docker buildx", "/usr/bin/docker"))

    def build_images(config, *, tag=None, push=False, engine=None, reporter=None, components=None):
        from charts.image_refs import COMPONENTS

        state["built"].append((config.images.registry, tag, push))
        images.write_record(config, {c: f"{config.images.registry}/mlops-{c}@sha256:{'ab' * 32}" for c in COMPONENTS})
        return []

    monkeypatch.setattr(images, "build_images", build_images)
    monkeypatch.setattr(pulumi_aws_account, "bucket_has_data", lambda bucket, region: state["has_data"])
    monkeypatch.setattr(pulumi_aws_account, "empty_bucket", lambda bucket, region: state["emptied"].append(bucket) or 7)
    return state


@pytest.fixture
def workspace(monkeypatch, aws):
    """The substituted stack, in an account where nothing is left to sweep (tests/test_eks_teardown.py runs
    the sweep against moto)."""
    from mlops_cli.adapters import aws_sweep, pulumi_workspace
    from mlops_cli.common.errors import NotFoundError

    from .eks_support import FakeWorkspace

    from mlops_cli.adapters import eks_endpoint

    monkeypatch.setattr(aws_sweep, "Aws", lambda region, endpoint_url=None: None)
    monkeypatch.setattr(aws_sweep, "sweep", lambda client, scope, **_: aws_sweep.SweepReport())
    monkeypatch.setattr(eks_endpoint, "allow_address", lambda eks, cluster, address, **_: eks_endpoint.EndpointAccess(()))
    ws = FakeWorkspace()

    def open_stack(config, program, *, create):
        if not create and not ws.exists:
            raise NotFoundError(f"no EKS stack {config.eks.stack!r}")
        ws.calls.append(f"open create={create}")
        return ws

    monkeypatch.setattr(pulumi_workspace, "open_stack", open_stack)
    return ws


@pytest.fixture
def kubernetes_target(monkeypatch, workspace):
    """A stand-in Kubernetes target module, recording what the EKS target hands it."""
    seen: dict[str, Any] = {"log": workspace.calls}

    class KubernetesTarget:
        name = "kubernetes"

        def __init__(self, config):
            seen["config"] = config

        def up(self, options, reporter, confirm):
            from mlops_cli.targets import Outcome, StepResult

            workspace.calls.append("platform up")
            return Outcome(steps=[StepResult("gateway", "created")],
                           info={"ingress": "http://mlops.local", "gateway_user": "admin",
                                 "gateway_password": "generated-Once-7"})

        def down(self, options, reporter, confirm):
            from mlops_cli.targets import Outcome, StepResult

            workspace.calls.append("platform down")
            seen["down_options"] = options
            return Outcome(steps=[StepResult("gateway", "deleted")])

    module = types.ModuleType("mlops_cli.targets.kubernetes")
    module.KubernetesTarget = KubernetesTarget
    monkeypatch.setitem(sys.modules, "mlops_cli.targets.kubernetes", module)
    return seen


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto server on loopback: S3 for the DVC remote, EC2 and ELB for the EKS teardown sweep."""
    import httpx

    binary = moto_server_binary()
    if binary is None:
        pytest.skip("no moto_server: run `python -m venv .venv-moto && .venv-moto/bin/pip install 'moto[server]'` (.ci/run does)")
    port = free_port()
    proc = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail("moto_server did not start in 30 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory):
    """A real etcd + kube-apiserver + kube-controller-manager + kube-scheduler on loopback (tests/controlplane.py);
    not built (`make controlplane`) or no Go is a failure that says what to run, not a skip."""
    from .controlplane import ControlPlane, ControlPlaneMissing

    try:
        with ControlPlane.running(tmp_path_factory.mktemp("controlplane")) as plane:
            yield plane
    except ControlPlaneMissing as exc:
        pytest.fail(str(exc), pytrace=False)



@pytest.fixture(scope="session")
def platform_project(control_plane, tmp_path_factory):
    """The project `mlops up` installs the platform from, on the session's real control plane, with the
    cluster prepared as tests/controlplane_platform.py says."""
    from mlops_cli.adapters.kube_apply import KubeCluster

    from . import controlplane_platform
    from .controlplane import ControlPlaneMissing

    root = tmp_path_factory.mktemp("platform") / "proj"
    root.mkdir()
    try:
        controlplane_platform.prepare(control_plane, root, KubeCluster.connect(str(control_plane.kubeconfig), "", "default"))
    except ControlPlaneMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    return root


@pytest.fixture
def platform(control_plane, platform_project, cli):
    """The platform project's mlops.toml, with the platform installed (`mlops up --reuse-existing`, again
    if a test took it down); run the CLI on it with `cli("--config", str(platform), ...)`."""
    from mlops_cli.adapters.kube_apply import KubeCluster

    from . import controlplane_platform

    config = platform_project / "mlops.toml"
    cluster = KubeCluster.connect(str(control_plane.kubeconfig), "", "default")
    if not controlplane_platform.installed(cluster):
        controlplane_platform.storage(cluster)
        result = cli("--config", str(config), "up", "--target", "kubernetes", "--reuse-existing")
        assert result.exit_code == 0, result.stderr + "\n" + "\n".join(control_plane.kubelet.errors[-5:])
    return config


@pytest.fixture
def kserve(control_plane, platform):
    """KServe v0.20.0's real manager, run by the platform `mlops up` installed as its release pod
    (tests/controlplane_programs.py), its webhooks called through their Service."""
    return control_plane.kubelet.process("kserve-manager")

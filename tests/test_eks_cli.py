"""`mlops up/down/status --target eks` with the Automation API workspace substituted at its seam.

No Pulumi CLI and no AWS here: `pulumi_workspace.open_stack` returns a FakeWorkspace that plays back a
preview a real stack would show, and `pulumi_aws_account` answers for an example account.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from mlops_cli.adapters import pulumi_aws_account
from mlops_cli.common.errors import MlopsError
from tests.eks_support import KUBECONFIG, OUTPUTS
from tests.support import AWS_ACCOUNT as ACCOUNT

@pytest.fixture
def no_pulumi(tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


@pytest.fixture
def no_kubernetes_target(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlops_cli.targets.kubernetes", None)


def _everything(result) -> str:
    return result.stdout + result.stderr


# ------------------------------------------------------------------------------------- preflight


def test_up_without_pulumi_cli_exits_2_with_install_hint_and_writes_nothing(cli, project, no_pulumi):
    result = cli("up", "--target", "eks")
    assert result.exit_code == 2
    assert "curl -fsSL https://get.pulumi.com | sh" in result.stderr
    assert "pulumi" in result.stderr.lower()
    assert "Traceback" not in _everything(result)
    assert not (project / ".mlops").exists()
    assert sorted(p.name for p in project.iterdir()) == ["mlops.toml"]


def test_up_without_passphrase_is_a_preflight_error(cli, project, aws, monkeypatch):
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE")
    result = cli("up", "--target", "eks", "--preview")
    assert result.exit_code == 2
    assert "PULUMI_CONFIG_PASSPHRASE" in result.stderr
    assert not (project / ".mlops").exists()


def test_doctor_checks_name_the_fix(project, no_pulumi, monkeypatch):
    from mlops_cli.common.errors import PreflightError
    from mlops_cli.config.loading import load_config
    from mlops_cli.targets.eks import EksTarget

    def no_credentials(region):
        raise PreflightError("no AWS credentials found", hint=pulumi_aws_account.CREDENTIALS_HINT)

    monkeypatch.setattr(pulumi_aws_account, "caller_identity", no_credentials)
    checks = {c.name: c for c in EksTarget(load_config()).checks()}
    assert not checks["pulumi CLI"].ok and checks["pulumi CLI"].fix == "curl -fsSL https://get.pulumi.com | sh"
    assert not checks["AWS credentials"].ok and "AWS_PROFILE" in checks["AWS credentials"].fix
    assert not checks["Pulumi secrets"].ok


# ----------------------------------------------------------------------------------------- preview


def test_preview_prints_resource_table_and_cost_estimate_and_stops(cli, project, workspace, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal: rich would shorten long resource types to fit 80
    result = cli("up", "--target", "eks", "--preview")
    out = _everything(result)
    assert result.exit_code == 0, out
    assert "Pulumi preview" in out and "aws:ec2/natGateway:NatGateway" in out and "aws:ec2/subnet:Subnet" in out
    assert "Cost ESTIMATE" in out and "m6i.large" in out and "NAT gateways" in out and "EKS control plane" in out
    assert ACCOUNT in out
    assert workspace.calls == ["open create=True", "preview"]  # no `up`
    assert not (project / ".mlops" / "eks-kubeconfig").exists()


def test_preview_json_carries_the_tables_as_data(cli, project, workspace):
    result = cli("--json", "up", "--target", "eks", "--preview")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    subnets = next(row for row in data["preview"] if row["resource type"] == "aws:ec2/subnet:Subnet")
    assert subnets["create"] == 4
    cost = data["cost_estimate"]
    assert cost["estimate"] is True and cost["prices_as_of"] and "aws.amazon.com" in cost["source"]
    nodes = next(line for line in cost["lines"] if line["item"] == "nodes m6i.large")
    assert nodes["quantity"] == 2  # counted once, though the component and its NodeGroup both appear
    assert nodes["hourly"] == pytest.approx(2 * 0.096)
    assert data["estimated_monthly_usd"] == cost["monthly"] > 0


# ------------------------------------------------------------------------------------- up


def test_up_not_confirmed_changes_nothing(cli, project, workspace):
    result = cli("up", "--target", "eks")  # no terminal: nothing can be asked (issue 26 D21: exit 2, --yes)
    assert result.exit_code == 2
    assert "no terminal to ask on" in result.stderr and "--yes" in result.stderr
    assert "up" not in workspace.calls
    assert not (project / ".mlops" / "eks-kubeconfig").exists()


def test_up_yes_writes_kubeconfig_0600_records_outputs_and_says_platform_skipped(cli, project, workspace,
                                                                                  no_kubernetes_target, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    result = cli("up", "--target", "eks", "--yes")
    out = _everything(result)
    assert result.exit_code == 0, out
    assert workspace.calls == ["open create=True", "preview", "up"]
    kubeconfig = project / ".mlops" / "eks-kubeconfig"
    assert json.loads(kubeconfig.read_text())["current-context"] == "aws"
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    recorded = json.loads((project / ".mlops" / "eks" / "dev.json").read_text())
    assert recorded["bucket_name"] == OUTPUTS["bucket_name"] and recorded["account"] == ACCOUNT
    assert "kubeconfig" not in recorded  # the secret stays in the 0600 file only
    assert "create   aws:ec2/natGateway:NatGateway network-nat-0" in out  # streamed resource by resource
    assert "platform install skipped: the kubernetes target is unavailable" in out
    assert OUTPUTS["irsa_role_arn"] in out and "vpc-0abc" in out


def test_up_hands_the_cluster_to_the_kubernetes_target(cli, project, workspace, kubernetes_target):
    result = cli("up", "--target", "eks", "--yes")
    assert result.exit_code == 0, _everything(result)
    assert workspace.calls[-2:] == ["up", "platform up"]
    config = kubernetes_target["config"]
    k8s = config.kubernetes
    assert Path(k8s.kubeconfig) == project / ".mlops" / "eks-kubeconfig"
    assert k8s.mlflow_artifacts == f"s3://{OUTPUTS['bucket_name']}/mlflow"
    assert k8s.mlflow_role_arn == OUTPUTS["irsa_role_arn"]
    assert k8s.predictor_role_arn == OUTPUTS["predictor_role_arn"]
    assert k8s.storage_class == "gp3"
    assert config.images.registry == OUTPUTS["images_registry"]  # the platform's images come from our ECR
    # The generated gateway password is shown once (it lives only in the cluster's Secret afterwards).
    assert "generated-Once-7" in result.stdout + result.stderr


def test_rerun_preview_counts_unchanged_resources(cli, project, workspace):
    for step in workspace.steps:
        step.op = "same"
    workspace.steps[1].op = "update"
    result = cli("--json", "up", "--target", "eks", "--preview")
    data = json.loads(result.stdout)
    assert data["to_change"] == 1
    vpc = next(row for row in data["preview"] if row["resource type"] == "aws:ec2/vpc:Vpc")
    assert vpc["update"] == 1 and vpc["create"] == ""


# ------------------------------------------------------------------------------------ down


def test_down_without_typed_confirmation_destroys_nothing(cli, project, workspace, kubernetes_target):
    result = cli("down", "--target", "eks")
    assert result.exit_code == 2  # no terminal to ask on (issue 26 D21)
    assert "no terminal to ask on" in result.stderr and "dev" in result.stderr
    assert "destroy" not in workspace.calls and "platform down" not in workspace.calls


def _target():
    from mlops_cli.config.loading import load_config
    from mlops_cli.targets.eks import EksTarget

    return EksTarget(load_config())


def test_down_asks_for_the_stack_name_then_removes_platform_before_destroy(project, workspace, kubernetes_target):
    from mlops_cli.common.progress import SILENT
    from mlops_cli.targets import DownOptions

    asked: list[Any] = []

    def typed_wrong(question, *, expect=None):
        asked.append(expect)
        return False

    with pytest.raises(MlopsError, match="not confirmed"):
        _target().down(DownOptions(), SILENT, typed_wrong)
    assert asked == ["dev"] and "destroy" not in workspace.calls

    outcome = _target().down(DownOptions(), SILENT, lambda q, *, expect=None: expect == "dev")
    calls = workspace.calls
    assert calls.index("platform down") < calls.index("destroy")
    assert kubernetes_target["down_options"].purge is True
    assert any(s.action == "destroyed" for s in outcome.steps)
    assert not (project / ".mlops" / "eks" / "dev.json").exists()


def test_down_keeps_a_bucket_that_holds_data(cli, project, workspace, aws, kubernetes_target):
    aws["has_data"] = True
    result = cli("down", "--target", "eks", "--yes")
    out = _everything(result)
    assert result.exit_code == 0, out
    assert "forget mlops:storage:ArtifactBucket" in workspace.calls
    assert workspace.calls.index("forget mlops:storage:ArtifactBucket") < workspace.calls.index("destroy")
    assert f"kept bucket s3://{OUTPUTS['bucket_name']}" in out and "--purge" in out
    assert aws["emptied"] == []


def test_down_delete_data_empties_the_bucket_and_destroys_it(cli, project, workspace, aws, kubernetes_target):
    aws["has_data"] = True
    result = cli("down", "--target", "eks", "--yes", "--delete-data")
    assert result.exit_code == 0, _everything(result)
    assert aws["emptied"] == [OUTPUTS["bucket_name"]]
    assert not any(c.startswith("forget") for c in workspace.calls)
    assert "destroy" in workspace.calls


def test_down_of_a_missing_stack_says_so(cli, project, workspace):
    workspace.exists = False
    result = cli("down", "--target", "eks", "--yes")
    assert result.exit_code == 2
    assert "no EKS stack 'dev'" in result.stderr and "Traceback" not in _everything(result)


# ---------------------------------------------------------------------------------- status


def test_status_shows_outputs_and_last_update(cli, project, workspace):
    result = cli("--json", "status", "--target", "eks")
    assert result.exit_code == 0, result.stderr
    rows = {c["component"]: c for c in json.loads(result.stdout)["components"]}
    assert rows["stack dev"]["healthy"] is True and "succeeded" in rows["stack dev"]["detail"]
    assert rows["bucket_name"]["detail"] == OUTPUTS["bucket_name"]
    assert rows["ecr_gateway"]["detail"].endswith("test-project/mlops-gateway")
    assert "kubeconfig" in rows and KUBECONFIG not in result.stdout


# ---------------------------------------------------------------------------- real AWS (opt-in)


@pytest.mark.aws
def test_real_pulumi_preview(cli, project, tmp_path, monkeypatch):
    if os.environ.get("MLOPS_TEST_AWS") != "1":
        pytest.skip("set MLOPS_TEST_AWS=1 (with the Pulumi CLI and AWS credentials) to run a real `pulumi preview`")
    if shutil.which("pulumi") is None:
        pytest.skip("the Pulumi CLI is not installed (curl -fsSL https://get.pulumi.com | sh)")
    import botocore.session

    if botocore.session.get_session().get_credentials() is None:
        pytest.skip("no AWS credentials (AWS_PROFILE or AWS_ACCESS_KEY_ID)")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", os.environ.get("MLOPS_TEST_PULUMI_PASSPHRASE", "mlops-test"))
    result = cli("--json", "up", "--target", "eks", "--preview")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    types_ = {row["resource type"] for row in data["preview"]}
    assert {"aws:ec2/vpc:Vpc", "aws:ec2/natGateway:NatGateway", "aws:eks/cluster:Cluster", "aws:s3/bucket:Bucket"} <= types_
    assert data["cost_estimate"]["monthly"] > 0

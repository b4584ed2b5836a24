"""Issue 11 point 1 (versions and support windows) and point 9 (dependency floors, ECR names).

The dates come from the EKS release calendar (mlops_cli/cloud/eks_versions.py names the page). The tests run
against the day the table was checked (eks_versions.CHECKED), not the calendar: a test does not turn red on a
date; `doctor` and `up` warn at run time when the configured version ages out.
"""

from __future__ import annotations

import json
import re
import tomllib
from datetime import date, timedelta
from importlib.metadata import version as installed_version

import pytest

from mlops_cli.cloud import eks_versions
from mlops_cli.cloud.eks_versions import Support
from mlops_cli.config.cluster_sections import EksConfig
from tests.support import REPO


def test_default_version_is_in_standard_support_with_months_left():
    st = eks_versions.status(EksConfig().version, eks_versions.CHECKED)
    assert st.support is Support.STANDARD, st.describe()
    assert st.days_left >= 60, st.describe()


def test_table_follows_the_documented_14_plus_12_month_rule():
    for v in eks_versions.VERSIONS:
        standard = (v.end_of_standard.year - v.eks_release.year) * 12 + v.end_of_standard.month - v.eks_release.month
        extended = (v.end_of_extended.year - v.end_of_standard.year) * 12 + v.end_of_extended.month - v.end_of_standard.month
        assert (standard, extended) == (14, 12), v


def test_phases_on_the_day_this_was_written():
    today = date(2026, 11, 27)
    assert eks_versions.status("1.31", today).support is Support.ENDED      # extended support ended 2026-11-26
    assert eks_versions.status("1.32", today).support is Support.EXTENDED
    assert eks_versions.status("1.34", today).support is Support.STANDARD   # but only until 2026-12-02
    assert eks_versions.status("1.35", today).support is Support.STANDARD
    assert eks_versions.status("1.99", today).support is Support.UNKNOWN
    # Extended-support billing starts at the beginning of the end-of-standard day.
    assert eks_versions.status("1.34", date(2026, 12, 2)).support is Support.EXTENDED


def test_upgrade_policy_is_standard_unless_the_version_is_already_extended():
    today = date(2026, 11, 27)
    assert eks_versions.upgrade_policy("1.35", "STANDARD", today) == "STANDARD"
    assert eks_versions.upgrade_policy("1.32", "STANDARD", today) == "EXTENDED"


def _checks(project, monkeypatch, version: str):
    from mlops_cli.adapters import pulumi_aws_account
    from mlops_cli.config.loading import load_config
    from mlops_cli.targets.eks import EksTarget

    (project / "mlops.toml").write_text(f'[project]\nname = "test-project"\n[eks]\nversion = "{version}"\n')
    monkeypatch.setattr(pulumi_aws_account, "caller_identity", lambda region: pulumi_aws_account.AwsIdentity(
        "123456789012", "arn:aws:iam::123456789012:user/dev", region, "env"))
    return {c.name: c for c in EksTarget(load_config()).checks()}


def test_doctor_warns_on_extended_support_with_its_price(project, monkeypatch):
    extended = next(v.version for v in eks_versions.VERSIONS if eks_versions.status(v.version).support is Support.EXTENDED)
    check = _checks(project, monkeypatch, extended)["EKS Kubernetes version"]
    assert not check.ok and not check.required
    assert "extended support" in check.detail and "$0.60" in check.detail
    assert eks_versions.newest_in_standard() in check.fix


def test_doctor_refuses_a_version_past_extended_support(project, monkeypatch):
    check = _checks(project, monkeypatch, "1.29")["EKS Kubernetes version"]
    assert not check.ok and check.required
    assert "left EKS extended support" in check.detail


def test_doctor_is_quiet_for_the_default(project, monkeypatch):
    check = _checks(project, monkeypatch, EksConfig().version)["EKS Kubernetes version"]
    assert check.ok and "standard support until" in check.detail


def test_up_refuses_an_ended_version_before_touching_pulumi(cli, project, monkeypatch, tmp_path):
    (project / "mlops.toml").write_text('[project]\nname = "test-project"\n[eks]\nversion = "1.29"\n')
    monkeypatch.setenv("PATH", str(tmp_path))  # no pulumi: the version check must come first and say why
    result = cli("up", "--target", "eks", "--preview")
    assert result.exit_code == 2
    err = " ".join(result.stderr.split())
    assert "1.29" in err and "extended support" in err
    assert f'eks.version = "{eks_versions.newest_in_standard()}"' in err


def test_cost_estimate_prices_extended_support():
    from mlops_cli.adapters.pulumi_workspace import ResourceStep
    from mlops_cli.cloud.cost_estimate import estimate, load_prices

    prices = load_prices()
    assert prices.hourly["eks_cluster_extended"] == pytest.approx(0.60)
    old = eks_versions.status("1.32").support is Support.EXTENDED
    if not old:
        pytest.skip("1.32 is no longer in extended support: pick another version for this test")
    steps = [ResourceStep("create", "aws:eks/cluster:Cluster", "c", inputs={"version": "1.32"})]
    [line] = [ln for ln in estimate(steps, prices, region="us-east-1").lines if ln.item.startswith("EKS control plane")]
    assert line.hourly == pytest.approx(0.60) and "extended" in line.item
    steps = [ResourceStep("create", "aws:eks/cluster:Cluster", "c", inputs={"version": EksConfig().version})]
    [line] = [ln for ln in estimate(steps, prices, region="us-east-1").lines if ln.item.startswith("EKS control plane")]
    assert line.hourly == pytest.approx(0.10)


# ------------------------------------------------------------------------------------ point 9


def _floor(spec: str) -> tuple[int, ...]:
    m = re.search(r">=\s*([\d.]+)", spec)
    assert m, spec
    return tuple(int(x) for x in m.group(1).split("."))


def test_pyproject_floors_match_the_apis_the_stack_uses():
    # pulumi-aws 7: eks.Cluster upgradePolicy/accessConfig, eks.Addon serviceAccountRoleArn, eks.NodeGroup
    # amiType AL2023_*, ec2.getInstanceTypeOfferings by zone id. pulumi-eks is no longer used at all: its
    # Cluster/ManagedNodeGroup are remote components whose insides no offline test can see (stacks/cluster.py).
    cloud = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["cloud"]
    by_name = {re.split(r"[<>=!~ ]", s, 1)[0]: s for s in cloud}
    assert "pulumi-eks" not in by_name
    assert _floor(by_name["pulumi-aws"]) >= (7,)
    for name in ("pulumi-aws",):
        assert tuple(int(x) for x in installed_version(name).split(".")[:1]) >= _floor(by_name[name])[:1]


ECR_NAME = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")  # ECR CreateRepository


@pytest.mark.parametrize("project_name", ["Review Sentiment", "review_sentiment", "ACME--ml..x", "-x-", "über"])
def test_ecr_repository_names_are_valid(project_name):
    from stacks.ecr import COMPONENTS, repository_name

    for component in COMPONENTS:
        name = repository_name(project_name, component)
        assert ECR_NAME.match(name) and 2 <= len(name) <= 256, name
        assert name.endswith(f"/mlops-{component}")


def test_program_sets_the_upgrade_policy_explicitly():
    from tests.pulumi_mocks import declare

    cluster = declare().one("aws:eks/cluster:Cluster")
    assert cluster.inputs["version"] == EksConfig().version
    assert cluster.inputs["upgradePolicy"] == {"supportType": "STANDARD"}
    extended = next(v.version for v in eks_versions.VERSIONS if eks_versions.status(v.version).support is Support.EXTENDED)
    assert declare(version=extended).one("aws:eks/cluster:Cluster").inputs["upgradePolicy"] == {"supportType": "EXTENDED"}


def test_charts_use_the_service_account_the_irsa_role_trusts(project):
    from charts.mlflow import objects
    from mlops_cli.config.loading import load_config
    from tests.pulumi_mocks import declare, irsa_trust

    config = load_config().with_overrides({"eks.service_account": "tracking",
                                           "kubernetes.mlflow_role_arn": "arn:aws:iam::1:role/x",
                                           "kubernetes.mlflow_artifacts": "s3://b/mlflow"})
    rendered = objects(config, None)
    [dep] = [o for o in rendered if o["kind"] == "Deployment"]
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "tracking"
    assert any(o["kind"] == "ServiceAccount" and o["metadata"]["name"] == "tracking" for o in rendered)
    role = declare(service_account="tracking").one("aws:iam/role:Role", "platform-irsa")
    assert json.loads(role.inputs["assumeRolePolicy"]) == irsa_trust("mlops", "tracking")


def test_predictor_gets_its_own_read_only_role():
    from charts.inference_service import PREDICTOR_SERVICE_ACCOUNT
    from tests.pulumi_mocks import declare, irsa_trust

    d = declare()
    role = d.one("aws:iam/role:Role", "predictor-irsa")
    assert json.loads(role.inputs["assumeRolePolicy"]) == irsa_trust("mlops", PREDICTOR_SERVICE_ACCOUNT)
    policy = json.loads(d.one("aws:iam/rolePolicy:RolePolicy", "predictor-bucket").inputs["policy"])
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert "s3:GetObject" in actions and not {"s3:PutObject", "s3:DeleteObject"} & actions
    assert d.outputs["predictor_role_arn"] == f"arn:aws:mock:::{role.name}"


def test_images_registry_output_names_the_ecr_repositories(project):
    from charts.image_refs import image_ref
    from mlops_cli.config.loading import load_config
    from tests.pulumi_mocks import declare

    d = declare()
    registry = d.outputs["images_registry"]
    assert registry == "123456789012.dkr.ecr.us-east-1.amazonaws.com/test-project"
    config = load_config().with_overrides({"images.registry": registry, "images.tag": "1.2.3"})
    for component in ("gateway", "predictor", "drift"):
        assert image_ref(config, component) == f"{d.outputs['ecr_urls'][component]}:1.2.3"


# ------------------------------------------------------------------------------------- issue 23 point 5


def test_the_table_has_1_36_and_is_newest_first():
    assert eks_versions.VERSIONS[0].version == "1.36"
    assert eks_versions.status("1.36", eks_versions.CHECKED).support is Support.STANDARD
    minors = [tuple(map(int, v.version.split("."))) for v in eks_versions.VERSIONS]
    assert minors == sorted(minors, reverse=True)


def test_an_unknown_version_is_a_warning_not_a_refusal(project, monkeypatch):
    check = _checks(project, monkeypatch, "1.37")["EKS Kubernetes version"]
    assert not check.ok and not check.required
    assert "not in the EKS version table" in check.detail and "eks_versions.py" in check.fix


def test_up_preview_goes_on_with_an_unknown_version(cli, project, workspace):
    with (project / "mlops.toml").open("a") as fh:
        fh.write('[eks]\nversion = "1.37"\n')
    result = cli("up", "--target", "eks", "--preview")
    out = " ".join((result.stdout + result.stderr).split())
    assert result.exit_code == 0, out
    assert "1.37 is not in the EKS version table" in out

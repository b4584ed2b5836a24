"""GPU nodes. Issue 11 point 6: they need G-instance vCPU quota, which new accounts do not have. Issue 23 point 7:
the pool exists only when something requests nvidia.com/gpu, `up` checks the quota, its subnets are in zones
offering the GPU type, and the device plugin schedules onto it on every Kubernetes version we accept."""

from __future__ import annotations

import pytest

from mlops_cli.adapters import pulumi_aws_account
from mlops_cli.common.errors import MlopsError


def _checks(project, monkeypatch, quota, gpu: bool = True):
    from mlops_cli.config.loading import load_config
    from mlops_cli.targets.eks import EksTarget

    (project / "mlops.toml").write_text('[project]\nname = "test-project"\n'
                                        f'[serving]\ndevice = "{"cuda" if gpu else "cpu"}"\n[eks]\n'
                                        'gpu_instance_types = ["g5.xlarge"]\ngpu_desired_size = 1\n')
    monkeypatch.setattr(pulumi_aws_account, "caller_identity", lambda region: pulumi_aws_account.AwsIdentity(
        "123456789012", "arn:aws:iam::123456789012:user/dev", region, "env"))
    asked = []

    def service_quota(service, code, region):
        asked.append((service, code, region))
        if isinstance(quota, Exception):
            raise quota
        return quota

    monkeypatch.setattr(pulumi_aws_account, "service_quota", service_quota)
    return {c.name: c for c in EksTarget(load_config()).checks()}, asked


def test_new_account_quota_of_zero_is_a_warning_with_the_quota_to_raise(project, monkeypatch):
    checks, asked = _checks(project, monkeypatch, 0.0)
    check = checks["GPU instance quota"]
    assert not check.ok and not check.required
    assert asked == [("ec2", "L-DB2E81BA", "us-east-1")]
    assert "L-DB2E81BA" in check.fix and "at least 4 vCPUs" in check.fix  # g5.xlarge has 4 vCPUs


def test_enough_quota_passes(project, monkeypatch):
    check = _checks(project, monkeypatch, 64.0)[0]["GPU instance quota"]
    assert check.ok and "64 vCPUs" in check.detail


def test_unreadable_quota_still_warns(project, monkeypatch):
    check = _checks(project, monkeypatch, MlopsError("AccessDenied"))[0]["GPU instance quota"]
    assert not check.ok and "new AWS accounts have 0 vCPUs" in check.detail


@pytest.mark.parametrize("gpu", [False])
def test_no_gpu_no_quota_check(project, monkeypatch, gpu):
    checks, asked = _checks(project, monkeypatch, 0.0, gpu=gpu)
    assert "GPU instance quota" not in checks and asked == []


# ------------------------------------------------------------------------------------------- issue 23


def test_the_gpu_pool_exists_only_when_something_requests_a_gpu(project):
    from charts.objects import requests_gpu, resources
    from mlops_cli.config.loading import load_config
    from tests.pulumi_mocks import declare

    config = load_config()
    assert not requests_gpu(config)
    # gpu_enabled alone declared a ~$734/month g5.xlarge pool that nothing used.
    assert [g.name for g in declare(gpu_enabled=True).of("aws:eks/nodeGroup:NodeGroup")] == ["cluster-general"]
    cuda = config.with_overrides({"serving.device": "cuda"})
    assert requests_gpu(cuda) and resources(cuda, "predictor")["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in resources(config, "predictor")["limits"]


def test_gpu_subnets_are_in_zones_that_offer_the_gpu_type():
    from tests.pulumi_mocks import OFFERINGS, ZONES, declare

    d = declare(gpu=True, gpu_instance_types=["g5.xlarge"], availability_zones=2)
    subnets = {f"{r.name}-id": ZONES[r.inputs["availabilityZone"]] for r in d.of("aws:ec2/subnet:Subnet")
               if "-private-" in r.name}
    gpu = d.one("aws:eks/nodeGroup:NodeGroup", "gpu").inputs["subnetIds"]
    general = d.one("aws:eks/nodeGroup:NodeGroup", "general").inputs["subnetIds"]
    assert gpu and {subnets[s] for s in gpu} <= OFFERINGS["g5.xlarge"]
    assert set(general) - set(gpu), "the general zones include one without g5 (use1-az1): it must be left out"


def _matches(term: dict, labels: dict[str, str]) -> bool:
    return all((e["operator"] == "In" and labels.get(e["key"]) in e["values"])
               or (e["operator"] == "Exists" and e["key"] in labels) for e in term.get("matchExpressions", []))


# The chart's own default affinity, used when our values set none (NVIDIA/k8s-device-plugin v0.17.0,
# deployments/helm/nvidia-device-plugin/values.yaml).
CHART_DEFAULT_AFFINITY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "feature.node.kubernetes.io/pci-10de.present", "operator": "In", "values": ["true"]}]},
    {"matchExpressions": [{"key": "feature.node.kubernetes.io/cpu-model.vendor_id", "operator": "In", "values": ["NVIDIA"]}]},
    {"matchExpressions": [{"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}]}]}}}


def test_device_plugin_schedules_on_the_gpu_pool_for_every_accepted_version():
    from mlops_cli.cloud.eks_versions import VERSIONS, Support, status
    from tests.aws_api import REFERENCE_DATE
    from tests.pulumi_mocks import declare

    accepted = [v.version for v in VERSIONS
                if status(v.version, REFERENCE_DATE).support in (Support.STANDARD, Support.EXTENDED)]
    assert {"1.33", "1.34", "1.35"} <= set(accepted)
    for version in accepted:
        d = declare(gpu=True, version=version)
        group = d.one("aws:eks/nodeGroup:NodeGroup", "gpu").inputs
        labels = dict(group["labels"])   # what our node group puts on its nodes
        if tuple(map(int, version.split("."))) >= (1, 35):
            labels["nvidia.com/gpu.present"] = "true"   # the EKS NVIDIA AMI adds it from 1.35 on
        values = d.one("kubernetes:helm.sh/v3:Release", "nvidia").inputs["values"]
        terms = (values.get("affinity") or CHART_DEFAULT_AFFINITY)["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert any(_matches(t, labels) for t in terms), (version, labels)
        assert all(labels.get(k) == v for k, v in values.get("nodeSelector", {}).items()), version


def test_up_refuses_a_gpu_pool_the_quota_cannot_hold(cli, project, workspace, monkeypatch):
    with (project / "mlops.toml").open("a") as fh:
        fh.write('[serving]\ndevice = "cuda"\n')
    monkeypatch.setattr(pulumi_aws_account, "service_quota", lambda service, code, region: 0.0)
    result = cli("up", "--target", "eks", "--yes")
    assert result.exit_code == 2, result.stdout + result.stderr
    err = " ".join(result.stderr.split())
    assert "L-DB2E81BA" in err and "at least 4 vCPUs" in err
    assert "up" not in workspace.calls and "preview" not in workspace.calls

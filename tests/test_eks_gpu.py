"""Issue 11 point 6 (the doctor side): GPU nodes need G-instance vCPU quota, which new accounts do not have."""

from __future__ import annotations

import pytest

from mlops_cli.adapters import pulumi_aws_account
from mlops_cli.common.errors import MlopsError


def _checks(project, monkeypatch, quota, gpu: bool = True):
    from mlops_cli.config.loading import load_config
    from mlops_cli.targets.eks import EksTarget

    (project / "mlops.toml").write_text('[project]\nname = "test-project"\n[eks]\n'
                                        f'gpu_enabled = {"true" if gpu else "false"}\n'
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

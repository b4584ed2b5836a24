"""Issue 23 point 7: the Pulumi mocks refuse what AWS refuses.

Every aws:* resource the program declares is turned into the API call its provider makes and checked against
the pinned botocore service models (tests/aws_api.py): required members, enums, patterns, lengths, ranges,
members the operation does not have; plus the EKS support calendar and launch template versions.
"""

from __future__ import annotations

import pytest

pulumi = pytest.importorskip("pulumi")

from tests import aws_api  # noqa: E402
from tests.pulumi_mocks import Mocks, declare  # noqa: E402


def test_the_default_and_gpu_programs_pass_every_check():
    # Nothing refused: every aws:* type the program uses is known to aws_api (an unknown one is refused).
    for fields in ({}, {"gpu": True}):
        d = declare(**fields)
        assert {r.typ for r in d.resources if r.typ.startswith("aws:")} and d.resources


def test_the_launch_template_version_the_old_mocks_made_up_is_refused(monkeypatch):
    # The old mocks echoed inputs back, so `template.latest_version` was None and every node group asked for
    # launch template version "None", which no template has.
    real = Mocks.new_resource

    def echo_only(self, args):
        rid, state = real(self, args)
        if args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
            state.pop("latestVersion")
        return rid, state

    monkeypatch.setattr(Mocks, "new_resource", echo_only)
    with pytest.raises(aws_api.Refused, match=r"CreateNodegroup: launch template .* has no version 'None'"):
        declare()


def test_a_wrong_enum_is_refused(monkeypatch):
    import stacks.cluster

    monkeypatch.setattr(stacks.cluster, "AMI_STANDARD", "AL2023_X86_64_STANDARD")  # the model's enum is case-exact
    with pytest.raises(aws_api.Refused, match=r"amiType: 'AL2023_X86_64_STANDARD' is not one of .*AL2023_x86_64_STANDARD"):
        declare()


def test_a_missing_required_input_is_refused(monkeypatch):
    # Without the provider's auto-naming, IAM CreateRole has no RoleName (required in the model).
    import tests.pulumi_mocks

    monkeypatch.setattr(tests.pulumi_mocks, "AUTO_NAMES", {})
    with pytest.raises(aws_api.Refused, match=r"iam CreateRole: CreateRoleRequest: missing required member 'RoleName'"):
        declare()
    call = aws_api.Call("eks", "CreateNodegroup", {"clusterName": "c", "nodegroupName": "n", "subnets": ["s"]})
    assert aws_api.problems(call) == ["eks CreateNodegroup: CreateNodegroupRequest: missing required member 'nodeRole'"]


def test_patterns_lengths_ranges_and_unknown_members():
    ecr = aws_api.Call("ecr", "CreateRepository", {"repositoryName": "Review Sentiment/mlops-gateway"})
    assert "does not match the pattern" in aws_api.problems(ecr)[0]
    role = aws_api.Call("iam", "CreateRole", {"RoleName": "r" * 65, "AssumeRolePolicyDocument": "{}"})
    assert "65 characters, at most 64 allowed" in aws_api.problems(role)[0]
    hops = aws_api.Call("iam", "CreateRole", {"RoleName": "r", "AssumeRolePolicyDocument": "{}", "MaxSessionDuration": 60})
    assert "60 is below the minimum 3600" in aws_api.problems(hops)[0]
    extra = aws_api.Call("eks", "CreateAddon", {"clusterName": "c", "addonName": "vpc-cni", "enableNetworkPolicy": True})
    assert "unknown member 'enableNetworkPolicy'" in aws_api.problems(extra)[0]
    with pytest.raises(aws_api.Refused, match="reach no member"):
        aws_api.calls("aws:eks/addon:Addon", {"clusterName": "c", "addonName": "vpc-cni", "typo": 1})
    with pytest.raises(aws_api.Refused, match="does not know which AWS call"):
        aws_api.calls("aws:ec2/instance:Instance", {})


def test_a_version_out_of_eks_support_is_refused_on_the_reference_date():
    with pytest.raises(aws_api.Refused, match=r"unsupported Kubernetes version 1\.30 on"):
        declare(version="1.30")


def test_add_on_configuration_and_policies_must_be_json():
    account = aws_api.Account(aws_api.REFERENCE_DATE)
    bad = aws_api.Call("eks", "CreateAddon", {"clusterName": "c", "addonName": "vpc-cni",
                                              "configurationValues": "enableNetworkPolicy: true"})
    assert "configurationValues is not a JSON document" in account.refusals(bad)[0]

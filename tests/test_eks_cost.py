"""The cost estimate: billable resources of a preview priced from stacks/prices.toml, labelled an estimate."""

from __future__ import annotations

import pytest

from mlops_cli.adapters.pulumi_workspace import ResourceStep
from mlops_cli.core.cost_estimate import estimate, load_prices


def _s(op, typ, name="r", **inputs):
    return ResourceStep(op=op, type=typ, name=name, inputs=inputs)


def test_price_table_is_dated_and_names_its_source():
    prices = load_prices()
    assert prices.as_of and prices.region == "us-east-1" and "aws.amazon.com" in prices.source
    assert prices.hours_per_month == 730
    assert prices.instances["m6i.large"] > 0 and prices.hourly["eks_cluster"] > 0


def test_nodes_nat_and_cluster_priced_per_hour_and_month():
    prices = load_prices()
    steps = [
        _s("create", "aws:eks/cluster:Cluster"),
        _s("create", "aws:eks/nodeGroup:NodeGroup", "general", instanceTypes=["m6i.large"],
           scalingConfig={"desiredSize": 3}, diskSize=50),
        *[_s("create", "aws:ec2/natGateway:NatGateway", f"nat-{i}") for i in range(2)],
        _s("delete", "aws:ec2/natGateway:NatGateway", "old-nat"),   # going away: not in the estimate
    ]
    est = estimate(steps, prices, region="us-east-1", platform_load_balancers=0)
    lines = {ln.item: ln for ln in est.lines}
    assert lines["nodes m6i.large"].quantity == 3
    assert lines["nodes m6i.large"].hourly == pytest.approx(3 * prices.instances["m6i.large"])
    assert lines["NAT gateways"].quantity == 2
    assert lines["node volumes (gp3)"].quantity == 150
    expected = prices.hourly["eks_cluster"] + 3 * prices.instances["m6i.large"] + 2 * prices.hourly["nat_gateway"] \
        + 150 * prices.monthly["ebs_gp3_gb"] / 730
    assert est.hourly == pytest.approx(expected)
    assert est.monthly == pytest.approx(expected * 730)
    assert "ESTIMATE" in est.title and est.rows()[-1][0] == "total (estimate)"


def test_unknown_instance_type_and_other_region_are_said_not_guessed():
    est = estimate([_s("create", "eks:index:ManagedNodeGroup", "gpu", instanceTypes=["p5.48xlarge"],
                       scalingConfig={"desiredSize": 1})], load_prices(), region="eu-west-1")
    [nodes] = [ln for ln in est.lines if ln.item.startswith("nodes")]
    assert nodes.hourly is None and est.unpriced == ["p5.48xlarge"]
    notes = " ".join(est.notes)
    assert "p5.48xlarge" in notes and "eu-west-1" in notes
    assert est.rows()[0][3] == "no price"

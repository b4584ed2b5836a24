"""The cost estimate: billable resources of a preview priced from stacks/prices.toml, labelled an estimate."""

from __future__ import annotations

import pytest

from mlops_cli.adapters.pulumi_workspace import ResourceStep
from mlops_cli.cloud.cost_estimate import estimate, load_prices


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
    # No launch template in these steps: EKS's own default root volume type, at the group's disk size.
    assert lines["node root volumes (gp2)"].quantity == 150
    expected = prices.hourly["eks_cluster"] + 3 * prices.instances["m6i.large"] + 2 * prices.hourly["nat_gateway"] \
        + 150 * prices.monthly["ebs_gp2_gb"] / 730 + lines["NAT data processing"].hourly \
        + lines["cross-AZ data transfer"].hourly
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


# ------------------------------------------------------------------ issue 11: what the estimate missed


def _default_preview():
    """What a preview of the default program plans: the steps pulumi mocks record, as the engine names them."""
    from tests.pulumi_mocks import declare

    d = declare()
    return [ResourceStep("create", r.typ, r.name, inputs=dict(r.inputs)) for r in d.resources]


def test_default_estimate_lists_every_billable_line_with_its_date():
    from datetime import date

    est = estimate(_default_preview(), load_prices(), region="us-east-1", today=date(2026, 11, 27))
    items = {ln.item: ln for ln in est.lines}
    assert items["EKS control plane"].hourly == pytest.approx(0.10)  # the default version is in standard support
    assert items["nodes m6i.xlarge"].quantity == 2
    # Root volumes as the launch template makes them: gp3, 50 GB per node.
    assert items["node root volumes (gp3)"].quantity == 100
    assert items["NAT data processing"].quantity == 50 and items["NAT data processing"].monthly == pytest.approx(50 * 0.045)
    ipv4 = [ln for ln in est.lines if ln.item == "public IPv4 addresses"]
    assert {ln.detail.split(":")[0] for ln in ipv4} == {"NAT Elastic IPs", "those load balancers"}
    assert sum(ln.quantity for ln in ipv4) == 1 + 2 * 2   # one NAT EIP; two classic ELBs in two zones
    assert items["CloudWatch Logs ingestion"].monthly == pytest.approx(5 * 0.50)
    assert est.prices.as_of in est.title and any(est.prices.as_of in n for n in est.notes)
    assert not any(n.startswith("WARNING") for n in est.notes)


def test_an_old_price_table_is_flagged():
    from datetime import date

    est = estimate(_default_preview(), load_prices(), region="us-east-1", today=date(2027, 7, 1))
    assert est.notes[0].startswith("WARNING: the price table is") and "more than six months" in est.notes[0]
    assert est.as_dict()["prices_age_days"] > 183


# ------------------------------------------------------------- issue 23 point 9: what the estimate still missed


def test_estimate_prices_pvcs_log_storage_and_cross_zone_traffic():
    from mlops_cli.cloud.cost_estimate import UsageAssumptions

    prices = load_prices()
    usage = UsageAssumptions(pvc_gb=40, log_gb_month=5, log_retention_days=30, cross_az_gb_month=20)
    lines = {ln.item: ln for ln in estimate(_default_preview(), prices, region="us-east-1", usage=usage).lines}
    assert lines["PVC volumes (gp3)"].monthly == pytest.approx(40 * prices.monthly["ebs_gp3_gb"])
    assert lines["CloudWatch Logs storage"].monthly == pytest.approx(5 * 30 / (730 / 24) * 0.03)
    assert lines["cross-AZ data transfer"].monthly == pytest.approx(20 * 2 * 0.01)


def test_the_platform_requests_the_pvc_gigabytes_the_estimate_prices(project, aws):
    from charts.platform import all_objects
    from mlops_cli.cloud.capacity import pvc_gib
    from mlops_cli.config.loading import load_config

    objects = list(all_objects(load_config(), None))
    claims = [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    assert claims and pvc_gib(objects) == pytest.approx(sum(
        float(c["spec"]["resources"]["requests"]["storage"].removesuffix("Gi")) for c in claims))

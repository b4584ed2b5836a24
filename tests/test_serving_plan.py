"""`mlops plan`: replicas, nodes and cost for a request rate, from a measured serving profile (issue 27)."""

from __future__ import annotations

import json
import math

import pytest

from mlops_cli.cloud import serving_plan
from mlops_cli.cloud.capacity import PlatformRequests, Requests, allocatable
from mlops_cli.cloud.cost_estimate import PriceTable
from mlops_cli.cloud.serving_profile import Cell, ServingProfile, load_profile

PROFILE = ServingProfile(
    measured_at="2026-12-06 18:00 UTC", machine="AMD EPYC, 2 CPUs, no VNNI", runtime="onnx-int8", predictor_cpus=2,
    cells=(Cell(1, 70.0, 14.0, 25.0), Cell(8, 80.0, 100.0, 150.0), Cell(32, 100.0, 330.0, 400.0)),
    gateway_cpu_ms=1.0, model_mb=59.0, cold_start_s=1.0, source="test")
PRICES = PriceTable(as_of="2026-11-27", region="us-east-1", currency="USD", source="test", hours_per_month=730,
                    hourly={"eks_cluster": 0.10}, monthly={}, per_gb={},
                    instances={"c6i.large": 0.085, "c6i.xlarge": 0.17, "m6i.xlarge": 0.192, "t3.xlarge": 0.1664,
                               "g5.xlarge": 1.006})
BASE = PlatformRequests(cluster=Requests(2000, 4096, 10), per_node=Requests(155, 120, 3), largest_pod=Requests(2025, 2048, 1))
LIMITS = serving_plan.Limits(predictor_mem_mib=2048, predictor_max_replicas=3, gateway_cpu_m=250, gateway_mem_mib=512,
                             gateway_min_replicas=2, gateway_max_replicas=6, gateway_target_cpu=0.70,
                             gateway_max_in_flight=64, node_max=4)


def nodes_of(kind: str, cluster: Requests) -> int:
    """capacity.plan_nodes written out: 80% of what a node has left after the DaemonSets (BASE.per_node)."""
    a = allocatable(kind)
    return max(1, math.ceil(max(cluster.cpu_m / ((a.cpu_m - 155) * 0.8), cluster.mem_mib / ((a.mem_mib - 120) * 0.8),
                                cluster.pods / (a.max_pods - 3))))


def test_plan_for_50_rps_is_one_predictor_on_one_node():
    p = serving_plan.plan(50, PROFILE, PRICES, LIMITS, BASE, p99_ms=1000)
    assert p.cell.concurrency == 32                    # the busiest cell within 1000 ms p99
    assert p.replica_rps == pytest.approx(70.0)        # 100 req/s x 0.7
    assert p.predictors == 1 and p.predictor_cpu == "2"
    assert p.gateways == 2                             # the HPA's minimum: 0.05 CPU needs one
    # c6i.large cannot hold a 2-CPU predictor, t3 (burstable) and g5 (GPU) are not candidates
    assert (p.instance_type, p.nodes) == ("c6i.xlarge", 1) == ("c6i.xlarge", nodes_of("c6i.xlarge", BASE.cluster))
    assert p.monthly == pytest.approx((1 * 0.17 + 0.10) * 730)   # 197.10
    assert p.prices_as_of == "2026-11-27" and p.limits_hit == []


def test_plan_for_5000_rps_adds_up_and_names_every_ceiling():
    p = serving_plan.plan(5000, PROFILE, PRICES, LIMITS, BASE, p99_ms=1000)
    assert p.predictors == 72                          # ceil(5000 / 70) = ceil(71.4)
    # gateways: CPU 5000 x 1 ms = 5 cores / (0.25 x 0.7) = 28.6 -> 29; in flight 5000 x 0.4 s / 64 = 31.25 -> 32
    assert p.gateway_cpu_cores == pytest.approx(5.0) and p.gateways == 32
    cluster = Requests(2000 + 71 * 2025 + 30 * 250, 4096 + 71 * 2048 + 30 * 512, 10 + 71 + 30)
    assert cluster == Requests(153275, 164864, 111)
    assert nodes_of("c6i.xlarge", cluster) == 51 and nodes_of("m6i.xlarge", cluster) == 51   # CPU-bound on both
    assert (p.instance_type, p.nodes) == ("c6i.xlarge", 51)   # same count, c6i is cheaper
    assert p.monthly == pytest.approx((51 * 0.17 + 0.10) * 730)   # 6,402.10
    assert p.limits_hit == ["predictors 72 > [serving].max_replicas 3",
                            "gateways 32 (in flight > 64 each) > [kubernetes].gateway_max_replicas 6",
                            "nodes 51 > [eks].max_size 4"]


def test_a_tighter_p99_plans_on_a_less_busy_cell():
    p = serving_plan.plan(50, PROFILE, PRICES, LIMITS, BASE, p99_ms=200)
    assert p.cell.concurrency == 8 and p.predictors == math.ceil(50 / (80 * 0.7))
    with pytest.raises(serving_plan.UsageError, match="lowest measured p99 is 25 ms"):
        serving_plan.plan(50, PROFILE, PRICES, LIMITS, BASE, p99_ms=10)


def test_scaling_is_linear_until_the_first_ceiling():
    rows = serving_plan.scaling(PROFILE, PRICES, LIMITS, BASE)
    assert [r.rps for r in rows] == [10, 30, 100, 300, 1000, 3000, 10000]
    assert [r.predictors for r in rows] == [math.ceil(r / 70) for r in (10, 30, 100, 300, 1000, 3000, 10000)]
    assert serving_plan.first_limit(rows).rps == 300           # 5 predictors > max_replicas 3
    per_rps = [r.monthly / r.rps for r in rows]
    assert per_rps == sorted(per_rps, reverse=True)            # the fixed part spreads over more traffic


@pytest.mark.parametrize("rps", ["0", "-5", "nan"])
def test_a_rate_that_is_not_positive_is_one_message(project, cli, rps):
    result = cli("plan", "--rps", rps)
    assert result.exit_code == 2
    assert "--rps must be a positive number of requests per second" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_plan_json_parses_and_matches_the_shipped_profile(project, cli):
    result = cli("plan", "--rps", "50", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    shipped = load_profile()
    p = data["plan"]
    best = max((c for c in shipped.cells if c.p99_ms <= 1000), key=lambda c: c.rps)   # [canary].max_p99_s = 1 s
    assert p["predictors"] == max(1, math.ceil(50 / (best.rps * serving_plan.TARGET_UTILISATION)))
    assert p["prices_as_of"] and p["monthly"] > 0 and len(data["scaling"]) == 7
    assert data["profile"]["measured_at"] == shipped.measured_at and data["profile"]["machine"] == shipped.machine


def test_a_broken_profile_names_the_file(project, cli):
    (project / "bad.json").write_text('{"format_version": 1, "cells": []}')
    result = cli("plan", "--rps", "50", "--profile", "bad.json")
    assert result.exit_code == 2 and "bad.json" in result.stderr and "Traceback" not in result.stderr

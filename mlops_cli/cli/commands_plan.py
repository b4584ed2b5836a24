"""`mlops plan`: predictors, gateways, nodes and monthly cost for a request rate, from a measured profile."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .state import state


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_)


def plan_(
    ctx: typer.Context,
    rps: float = typer.Option(..., "--rps", help="Requests per second to serve (one text each)."),
    p99_ms: Optional[float] = typer.Option(None, "--p99-ms", help="p99 latency to keep, ms (default: [canary].max_p99_s)."),
    target: str = typer.Option("eks", "--target", "-t", help="Where to plan for: eks (instance types and prices)."),
    profile: Optional[Path] = typer.Option(None, "--profile", help="Serving profile from benchmarks/serving.py "
                                           "--profile-out (default: the shipped one, with its date and machine)."),
) -> None:
    """Plan serving capacity for a request rate: predictor replicas and their CPU requests, gateway
    replicas, EKS nodes and instance type, and the monthly cost (the price table of `up --preview`),
    from a measured serving profile. Also shows how the plan scales from 10 to 10,000 requests/s and
    where a configured ceiling stops it. Nothing is created or contacted.

    Examples:

      mlops plan --rps 50

      mlops plan --rps 5000 --p99-ms 500

      mlops plan --rps 200 --json
    """
    from ..cloud import serving_plan
    from ..cloud.cost_estimate import load_prices
    from ..cloud.serving_profile import load_profile
    from ..common.errors import UsageError
    from . import render

    if target != "eks":
        raise UsageError(f"--target {target}: plan knows instance types and prices for eks only", hint="--target eks")
    st = state(ctx)
    config = st.config({"kubernetes.mlflow_artifacts": "s3://plan/mlflow"})   # as `up --target eks` sets it
    p99 = p99_ms if p99_ms is not None else config.canary.max_p99_s * 1000
    measured = load_profile(profile)
    prices = load_prices()
    limits = serving_plan.limits_from_config(config)
    serving_plan._check_rps(rps, p99)
    base, missing = serving_plan.platform_base(config, measured)
    result = serving_plan.plan(rps, measured, prices, limits, base, p99)
    rows = serving_plan.scaling(measured, prices, limits, base, p99)
    stop = serving_plan.first_limit(rows)
    caveats = [f"profile: {measured.runtime} measured {measured.measured_at} on {measured.machine}; "
               "the plan assumes EKS nodes are as fast per CPU",
               f"cost: nodes and the EKS control plane only, on-demand {prices.region} prices as of {prices.as_of} "
               "(stacks/prices.toml); `mlops up --preview` prices the whole stack"]
    if missing:
        caveats.append(f"not counted (upstream manifests neither bundled nor cached here): {', '.join(missing)}")
    if st.json:
        render.print_json({"plan": result.to_dict(), "scaling": [p.to_dict() for p in rows],
                           "first_limit_rps": stop.rps if stop else None, "profile": measured.to_dict(),
                           "caveats": caveats})
        return
    render.show(render.table(
        f"plan for {rps:g} requests/s, p99 <= {p99:g} ms (eks)", ["part", "count", "each", "why"],
        [("predictor", result.predictors, f"{result.predictor_cpu} CPU", result.notes[0]),
         ("gateway", result.gateways, f"{limits.gateway_cpu_m:g}m CPU",
          f"{result.gateway_cpu_cores:g} CPU at {measured.gateway_cpu_ms:g} ms per request; HPA target "
          f"{limits.gateway_target_cpu:.0%}, min {limits.gateway_min_replicas}"),
         ("node", result.nodes, result.instance_type, f"${result.node_hourly:g}/h each, cheapest priced CPU type that holds it"),
         ("monthly", f"${result.monthly:,.2f}", "", f"{result.nodes} x ${result.node_hourly:g} + control plane "
          f"${result.control_plane_hourly:g}, per hour x {prices.hours_per_month:g} h")]))
    render.show(render.table(
        "how the plan scales", ["req/s", "predictors", "gateways", "nodes", "type", "$/month", "$/month per req/s", "ceiling hit"],
        [(f"{p.rps:,.0f}", p.predictors, p.gateways, p.nodes, p.instance_type, f"{p.monthly:,.0f}",
          f"{p.monthly / p.rps:,.2f}", "; ".join(p.limits_hit) or "-") for p in rows]))
    for line in result.limits_hit:
        render.note(line, lead="ceiling:", style="yellow", result=True)
    if stop is not None:
        render.note(f"linear until a configured ceiling: from {stop.rps:g} req/s ({stop.limits_hit[0]})", lead="scaling:")
    for line in [result.notes[1], *caveats]:
        render.note(line)

"""How many predictors, gateways and EKS nodes N requests/s need, and what they cost a month.

Everything follows from a measured serving profile (cloud/serving_profile.py) and the cluster's own numbers:
- a predictor replica requests the CPUs it was measured on and serves, at TARGET_UTILISATION, the best
  measured cell whose p99 is within the target (more clients per replica buy throughput with latency);
- gateway replicas: its measured CPU per request against the HPA's CPU target on the gateway's request,
  and enough replicas that the in-flight requests (Little's law, rps x p99) stay under max_in_flight;
- nodes: capacity.plan_nodes on the platform's requests plus these pods, for each priced CPU instance type
  (burstable t3 left out: CPU credits run out under steady serving); the cheapest wins;
- cost: nodes and the EKS control plane from stacks/prices.toml (`up --preview`'s table, its as_of).
Where a configured ceiling ([serving].max_replicas, [kubernetes].gateway_max_replicas, [eks].max_size) is
below the plan, the plan says so: past that point more traffic does not get more capacity.

    p = plan(50, profile, prices, limits, base)     # -> Plan: p.predictors, p.nodes, p.monthly
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ..common.errors import UsageError
from .capacity import (INSTANCES, KNATIVE_QUEUE_PROXY, DoesNotFit, PlatformRequests, Requests, plan_nodes,
                       vpc_address_shortfall)
from .cost_estimate import PriceTable
from .serving_profile import Cell, ServingProfile

TARGET_UTILISATION = 0.7   # of a replica's measured throughput: bursts and uneven balancing need the rest
SCALING_RPS = (10, 30, 100, 300, 1000, 3000, 10000)


@dataclass(frozen=True)
class Limits:
    """The cluster's numbers the plan works with (from mlops.toml; `limits_from_config`)."""

    predictor_mem_mib: float = 2048
    predictor_max_replicas: int = 3
    gateway_cpu_m: float = 250
    gateway_mem_mib: float = 512
    gateway_min_replicas: int = 2
    gateway_max_replicas: int = 6
    gateway_target_cpu: float = 0.70
    gateway_max_in_flight: int = 64
    node_max: int = 4
    vpc_cidr: str = ""          # "" skips the VPC address check
    zones: int = 2


@dataclass
class Plan:
    rps: float
    p99_target_ms: float
    cell: Cell                  # the measured load level each predictor runs at
    replica_rps: float          # what one predictor is planned to take (cell.rps x TARGET_UTILISATION)
    predictors: int
    predictor_cpu: str          # each predictor's CPU request
    gateways: int
    gateway_cpu_cores: float    # CPU the gateways use at this rate (measured CPU per request x rps)
    instance_type: str
    nodes: int
    node_hourly: float
    control_plane_hourly: float
    monthly: float
    prices_as_of: str
    limits_hit: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cell": asdict(self.cell)}


def _check_rps(rps: float, p99_ms: float | None) -> None:
    if not (isinstance(rps, (int, float)) and math.isfinite(rps) and rps > 0):
        raise UsageError(f"--rps must be a positive number of requests per second, got {rps:g}",
                         hint="e.g. mlops plan --rps 50")
    if p99_ms is not None and not (math.isfinite(p99_ms) and p99_ms > 0):
        raise UsageError(f"--p99-ms must be a positive number of milliseconds, got {p99_ms:g}",
                         hint="e.g. mlops plan --rps 50 --p99-ms 500")


def replica_cell(profile: ServingProfile, p99_ms: float) -> Cell:
    """The measured cell with the most requests/s whose p99 is within `p99_ms`."""
    within = [c for c in profile.cells if c.p99_ms <= p99_ms]
    if not within:
        best = min(profile.cells, key=lambda c: c.p99_ms)
        raise UsageError(f"no measured load level keeps p99 within {p99_ms:g} ms: the lowest measured p99 is "
                         f"{best.p99_ms:g} ms (concurrency {best.concurrency}, {profile.machine})",
                         hint="raise --p99-ms, or measure faster hardware with benchmarks/serving.py --profile-out")
    return max(within, key=lambda c: c.rps)


def plan(rps: float, profile: ServingProfile, prices: PriceTable, limits: Limits, base: PlatformRequests,
         p99_ms: float = 1000.0) -> Plan:
    """`base`: the platform's requests without predictors beyond its one and without extra gateways."""
    _check_rps(rps, p99_ms)
    cell = replica_cell(profile, p99_ms)
    replica_rps = cell.rps * TARGET_UTILISATION
    predictors = max(1, math.ceil(rps / replica_rps))
    limits_hit: list[str] = []
    if predictors > limits.predictor_max_replicas:
        limits_hit.append(f"predictors {predictors} > [serving].max_replicas {limits.predictor_max_replicas}")

    gateway_cores = rps * profile.gateway_cpu_ms / 1000
    by_cpu = math.ceil(gateway_cores / (limits.gateway_cpu_m / 1000 * limits.gateway_target_cpu))
    by_in_flight = math.ceil(rps * cell.p99_ms / 1000 / limits.gateway_max_in_flight)
    gateways = max(limits.gateway_min_replicas, by_cpu, by_in_flight)
    if gateways > limits.gateway_max_replicas:
        why = "CPU" if by_cpu >= by_in_flight else f"in flight > {limits.gateway_max_in_flight} each"
        limits_hit.append(f"gateways {gateways} ({why}) > [kubernetes].gateway_max_replicas {limits.gateway_max_replicas}")

    pod = Requests(profile.predictor_cpus * 1000 + KNATIVE_QUEUE_PROXY[0], limits.predictor_mem_mib + KNATIVE_QUEUE_PROXY[1], 1)
    gateway_pod = Requests(limits.gateway_cpu_m, limits.gateway_mem_mib, 1)
    extra = pod.times(predictors - 1) + gateway_pod.times(gateways - limits.gateway_min_replicas)
    requests = PlatformRequests(cluster=base.cluster + extra, per_node=base.per_node,
                                largest_pod=Requests(max(base.largest_pod.cpu_m, pod.cpu_m),
                                                     max(base.largest_pod.mem_mib, pod.mem_mib), 1))
    instance, nodes, node_hourly = _cheapest_nodes(requests, prices)
    if nodes > limits.node_max:
        limits_hit.append(f"nodes {nodes} > [eks].max_size {limits.node_max}")
    if limits.vpc_cidr and vpc_address_shortfall(limits.vpc_cidr, limits.zones, instance, nodes):
        limits_hit.append(f"VPC: {nodes} {instance} nodes need more pod addresses than {limits.vpc_cidr}'s subnets hold")
    control = prices.hourly["eks_cluster"]
    monthly = (nodes * node_hourly + control) * prices.hours_per_month
    notes = [f"each predictor requests {profile.predictor_cpus} CPU (what it was measured on) and takes "
             f"{replica_rps:.1f} req/s: {TARGET_UTILISATION:.0%} of the {cell.rps:g} req/s measured at concurrency "
             f"{cell.concurrency} (p99 {cell.p99_ms:g} ms)",
             f"each new predictor fetches the model ({profile.model_mb:g} MB) from the artifact store: "
             f"{predictors * profile.model_mb / 1024:.1f} GB for all {predictors} (S3 on EKS; MLflow is not on the request path)"]
    return Plan(rps=rps, p99_target_ms=p99_ms, cell=cell, replica_rps=round(replica_rps, 2), predictors=predictors,
                predictor_cpu=str(profile.predictor_cpus), gateways=gateways, gateway_cpu_cores=round(gateway_cores, 3),
                instance_type=instance, nodes=nodes, node_hourly=node_hourly, control_plane_hourly=control,
                monthly=round(monthly, 2), prices_as_of=prices.as_of, limits_hit=limits_hit, notes=notes)


def _cheapest_nodes(requests: PlatformRequests, prices: PriceTable) -> tuple[str, int, float]:
    """(instance type, nodes, hourly price of one) with the lowest total among priced CPU types."""
    options = []
    for kind, hourly in sorted(prices.instances.items()):
        if kind not in INSTANCES or kind.startswith(("g", "t")):   # GPUs, burstable
            continue
        try:
            nodes = plan_nodes(requests, kind).nodes_needed
        except DoesNotFit:
            continue
        options.append((nodes * hourly, nodes, kind, hourly))
    if not options:
        raise UsageError("no priced instance type holds one predictor pod",
                         hint="add a larger type to stacks/prices.toml and cloud/capacity.py INSTANCES")
    _, nodes, kind, hourly = min(options)
    return kind, nodes, hourly


def scaling(profile: ServingProfile, prices: PriceTable, limits: Limits, base: PlatformRequests,
            p99_ms: float = 1000.0, rates: tuple[float, ...] = SCALING_RPS) -> list[Plan]:
    return [plan(r, profile, prices, limits, base, p99_ms) for r in rates]


def first_limit(plans: list[Plan]) -> Plan | None:
    """The lowest rate at which a configured ceiling stops the plan from scaling on."""
    return next((p for p in plans if p.limits_hit), None)


def limits_from_config(config: Any) -> Limits:
    from charts.objects import resources

    from .capacity import cpu_millis, memory_mib

    k, eks = config.kubernetes, config.eks
    predictor, gateway = resources(config, "predictor")["requests"], resources(config, "gateway")["requests"]
    return Limits(predictor_mem_mib=memory_mib(predictor["memory"]), predictor_max_replicas=config.serving.max_replicas,
                  gateway_cpu_m=cpu_millis(gateway["cpu"]), gateway_mem_mib=memory_mib(gateway["memory"]),
                  gateway_min_replicas=k.gateway_min_replicas, gateway_max_replicas=k.gateway_max_replicas,
                  gateway_target_cpu=k.gateway_target_cpu / 100, gateway_max_in_flight=config.gateway.max_in_flight,
                  node_max=eks.max_size, vpc_cidr=eks.vpc_cidr, zones=eks.availability_zones)


def platform_base(config: Any, profile: ServingProfile) -> tuple[PlatformRequests, list[str]]:
    """The requests of what `up` installs with one predictor of the profile's size, and the upstream
    steps left out because their manifests are neither bundled nor cached here (never downloaded)."""
    from charts.objects import resources
    from charts.platform import platform_steps

    from .capacity import platform_requests

    steps = platform_steps(config, None, missing_ok=True)
    missing = [s.title for s in steps if s.upstream and not s.objects]
    memory = resources(config, "predictor")["requests"]["memory"]
    objects = [obj for step in steps for obj in step.objects]
    return platform_requests(objects, {"requests": {"cpu": str(profile.predictor_cpus), "memory": memory}}), missing

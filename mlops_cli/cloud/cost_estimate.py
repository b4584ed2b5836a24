"""An estimate of what the EKS stack costs to run, from the resources a Pulumi preview plans.

Only resources billed by the hour (cluster, nodes, NAT gateways, public IPv4, load balancers) and node
volumes are priced, from `stacks/prices.toml` (dated, source named). Usage-based charges (data through
NAT and load balancers, S3, ECR, transfer) are named but not estimated. It is an estimate, not a bill.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Protocol

# The platform install (the Kubernetes target) causes two Services of type LoadBalancer: the Envoy proxy
# Envoy Gateway provisions for our Gateway ("deploys Envoy Proxy Service as LoadBalancer by default",
# gateway.envoyproxy.io tasks/traffic/gateway-address) and Kourier's `kourier` Service (kourier.yaml).
# On EKS each gets a classic ELB that the stack does not declare but `up` does cause.
PLATFORM_LOAD_BALANCERS = 2
DEFAULT_NODE_DISK_GB = 20  # EKS's default when a node group names no disk size
_GONE = {"delete", "delete-replaced", "discard", "discard-replaced", "remove-pending-replace"}
NOT_ESTIMATED = "load balancer capacity units, S3 storage and requests, ECR storage, data transfer out"
STALE_AFTER_DAYS = 183   # six months: list prices move, and new instance generations get cheaper


@dataclass(frozen=True)
class UsageAssumptions:
    """Volumes the usage-based lines are priced at (from [eks] estimate_*): not measured, said so."""

    nat_gb_month: float = 50.0
    log_gb_month: float = 5.0
    zones: int = 2            # an internet-facing classic ELB has a public IPv4 address in each zone
    pvc_gb: float = 0.0       # the platform's PersistentVolumeClaims (gp3 volumes the EBS CSI driver makes)
    log_retention_days: int = 30    # how long the control-plane logs are kept: stored GB at steady state
    cross_az_gb_month: float = 20.0  # traffic between zones (pods of one service calling another's)


class Step(Protocol):
    op: str
    type: str
    name: str
    inputs: dict[str, Any]


@dataclass(frozen=True)
class PriceTable:
    as_of: str
    region: str
    currency: str
    source: str
    hours_per_month: float
    hourly: dict[str, float]
    monthly: dict[str, float]
    instances: dict[str, float]
    per_gb: dict[str, float] = field(default_factory=dict)


@dataclass
class CostLine:
    item: str
    detail: str
    quantity: float
    hourly: float | None  # for the whole line; None: no price in the table
    monthly: float | None = None


@dataclass
class CostEstimate:
    lines: list[CostLine]
    prices: PriceTable
    region: str
    unpriced: list[str] = field(default_factory=list)
    today: date | None = None

    @property
    def prices_age_days(self) -> int | None:
        try:
            as_of = date.fromisoformat(self.prices.as_of)
        except ValueError:
            try:
                as_of = date.fromisoformat(f"{self.prices.as_of}-01")   # "YYYY-MM"
            except ValueError:
                return None
        return ((self.today or date.today()) - as_of).days

    @property
    def hourly(self) -> float:
        return sum(line.hourly or 0.0 for line in self.lines)

    @property
    def monthly(self) -> float:
        return self.hourly * self.prices.hours_per_month

    @property
    def title(self) -> str:
        return (f"Cost ESTIMATE, not a bill: on-demand {self.prices.region} list prices as of {self.prices.as_of} "
                f"({self.prices.currency}), {self.prices.hours_per_month:g} h/month")

    @property
    def notes(self) -> list[str]:
        notes = [f"prices as of {self.prices.as_of}: stacks/prices.toml, from {self.prices.source}",
                 f"not estimated (usage-based): {NOT_ESTIMATED}"]
        age = self.prices_age_days
        if age is not None and age > STALE_AFTER_DAYS:
            notes.insert(0, f"WARNING: the price table is {age} days old (as of {self.prices.as_of}, more than six "
                            "months): re-check the AWS pricing pages and update stacks/prices.toml")
        if self.region != self.prices.region:
            notes.append(f"the stack is in {self.region}; prices are {self.prices.region}'s and differ there")
        if self.unpriced:
            notes.append(f"no price in stacks/prices.toml for: {', '.join(self.unpriced)} (left out of the total)")
        return notes

    columns = ("billable resource", "detail", "qty", "$/hour", "$/month")

    def rows(self) -> list[tuple[str, ...]]:
        rows = [(ln.item, ln.detail, f"{ln.quantity:g}", _money(ln.hourly, 4), _money(ln.monthly, 2)) for ln in self.lines]
        rows.append(("total (estimate)", "", "", _money(self.hourly, 4), _money(self.monthly, 2)))
        return rows

    def as_dict(self) -> dict[str, Any]:
        return {
            "estimate": True,
            "title": self.title,
            "currency": self.prices.currency,
            "prices_as_of": self.prices.as_of,
            "prices_region": self.prices.region,
            "prices_age_days": self.prices_age_days,
            "source": self.prices.source,
            "lines": [asdict(ln) for ln in self.lines],
            "hourly": round(self.hourly, 4),
            "monthly": round(self.monthly, 2),
            "notes": self.notes,
        }


def _money(value: float | None, digits: int) -> str:
    return "no price" if value is None else f"{value:,.{digits}f}"


def load_prices(path: Path | None = None) -> PriceTable:
    text = path.read_text() if path else resources.files("stacks").joinpath("prices.toml").read_text()
    data = tomllib.loads(text)
    return PriceTable(as_of=str(data["as_of"]), region=data["region"], currency=data["currency"],
                      source=" ".join(data["source"].split()), hours_per_month=float(data["hours_per_month"]),
                      hourly=data["hourly"], monthly=data["monthly"], instances=data["instances"],
                      per_gb=data.get("per_gb", {}))


def _num(value: Any, default: float = 0.0) -> float:
    # Preview inputs that depend on other resources are unknown (a sentinel string): count them as default.
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _remaining(steps: Iterable[Step]) -> list[Step]:
    return [s for s in steps if s.op not in _GONE]


def _node_groups(steps: list[Step]) -> list[Step]:
    # Count the aws:eks NodeGroup; a component wrapping one (pulumi-eks ManagedNodeGroup) only when alone.
    concrete = [s for s in steps if s.type == "aws:eks/nodeGroup:NodeGroup"]
    return concrete or [s for s in steps if s.type == "eks:index:ManagedNodeGroup"]


def _clusters(steps: list[Step]) -> list[Step]:
    concrete = [s for s in steps if s.type == "aws:eks/cluster:Cluster"]
    return concrete or [s for s in steps if s.type == "eks:index:Cluster"]


def _control_plane(cluster: Step, prices: PriceTable) -> CostLine:
    from .eks_versions import Support, status

    version = cluster.inputs.get("version")
    st = status(version) if isinstance(version, str) else None
    if st is not None and st.support is Support.EXTENDED:
        return CostLine("EKS control plane (extended support)",
                        f"Kubernetes {version}: extended support since {st.entry.end_of_standard}", 1,
                        prices.hourly["eks_cluster_extended"])
    detail = f"Kubernetes {version}, standard support" if st is not None and st.support is Support.STANDARD else "per cluster"
    return CostLine("EKS control plane", detail, 1, prices.hourly["eks_cluster"])


def _root_volumes(steps: list[Step], group: Step) -> tuple[str, float]:
    """(type, GB) of a node group's root volume: from its launch template (ours, stacks/cluster.py) when it
    has one, else EKS's default for a group without one."""
    template = next((s for s in steps if s.type == "aws:ec2/launchTemplate:LaunchTemplate" and s.name == group.name), None)
    for mapping in (template.inputs.get("blockDeviceMappings") or []) if template else []:
        ebs = mapping.get("ebs") or {}
        if "volumeSize" in ebs:
            return str(ebs.get("volumeType") or "gp2"), _num(ebs["volumeSize"], DEFAULT_NODE_DISK_GB)
    return "gp2", _num(group.inputs.get("diskSize"), DEFAULT_NODE_DISK_GB)


def estimate(steps: Iterable[Step], prices: PriceTable, *, region: str,
             platform_load_balancers: int = PLATFORM_LOAD_BALANCERS, usage: UsageAssumptions | None = None,
             today: date | None = None) -> CostEstimate:
    """The hourly and monthly cost of the resources that exist once the previewed update is applied."""
    usage = usage or UsageAssumptions()
    live = _remaining(steps)
    lines: list[CostLine] = []
    unpriced: list[str] = []
    hourly, monthly, per_gb, hours = prices.hourly, prices.monthly, prices.per_gb, prices.hours_per_month

    clusters = len(_clusters(live))
    for cluster in _clusters(live):
        lines.append(_control_plane(cluster, prices))

    volumes: Counter[str] = Counter()
    for group in _node_groups(live):
        inputs = group.inputs
        types = inputs.get("instanceTypes") or ["t3.medium"]
        kind = str(types[0])
        count = _num((inputs.get("scalingConfig") or {}).get("desiredSize"), 1.0)
        volume_type, size = _root_volumes(live, group)
        volumes[volume_type] += count * size
        price = prices.instances.get(kind)
        if price is None:
            unpriced.append(kind)
        lines.append(CostLine(f"nodes {kind}", f"node group {group.name} (desired size)", count,
                              None if price is None else count * price))
    for volume_type, gb in sorted(volumes.items()):
        price = monthly.get(f"ebs_{volume_type}_gb")
        if price is None:
            unpriced.append(f"EBS {volume_type}")
        lines.append(CostLine(f"node root volumes ({volume_type})", "GB, all nodes, as the launch template makes them",
                              gb, None if price is None else gb * price / hours))

    types = Counter(s.type for s in live)
    nats = types["aws:ec2/natGateway:NatGateway"]
    if nats:
        lines.append(CostLine("NAT gateways", "per gateway-hour", nats, nats * hourly["nat_gateway"]))
        lines.append(CostLine("NAT data processing", f"{usage.nat_gb_month:g} GB/month assumed (eks.estimate_nat_gb_month)",
                              usage.nat_gb_month, usage.nat_gb_month * per_gb["nat_processed"] / hours))
    eips = types["aws:ec2/eip:Eip"]
    if eips:
        lines.append(CostLine("public IPv4 addresses", "NAT Elastic IPs", eips, eips * hourly["public_ipv4"]))

    for step in live:
        if step.type in ("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer"):
            kind = "network" if step.inputs.get("loadBalancerType") == "network" else "application"
            lines.append(CostLine(f"load balancer ({kind})", step.name, 1, hourly[f"load_balancer_{kind}"]))
        elif step.type == "aws:elb/loadBalancer:LoadBalancer":
            lines.append(CostLine("load balancer (classic)", step.name, 1, hourly["load_balancer_classic"]))
    if platform_load_balancers and clusters:
        lines.append(CostLine("load balancer (classic)", "Envoy Gateway proxy + Kourier Services, from the platform install",
                              platform_load_balancers, platform_load_balancers * hourly["load_balancer_classic"]))
        addresses = platform_load_balancers * usage.zones
        lines.append(CostLine("public IPv4 addresses", f"those load balancers: one per zone ({usage.zones}) each",
                              addresses, addresses * hourly["public_ipv4"]))
    if clusters and types["aws:cloudwatch/logGroup:LogGroup"]:
        lines.append(CostLine("CloudWatch Logs ingestion", f"control-plane logs, {usage.log_gb_month:g} GB/month assumed "
                              "(eks.estimate_log_gb_month)", usage.log_gb_month,
                              usage.log_gb_month * per_gb["cloudwatch_logs_ingest"] / hours))
        # Kept for the group's retention: at steady state that many days of ingestion are stored.
        stored = usage.log_gb_month * usage.log_retention_days / (hours / 24)
        lines.append(CostLine("CloudWatch Logs storage", f"{usage.log_retention_days} days kept (eks.log_retention_days)",
                              round(stored, 2), stored * monthly["cloudwatch_logs_storage_gb"] / hours))
    if clusters and usage.pvc_gb:
        lines.append(CostLine("PVC volumes (gp3)", "GB the platform's PersistentVolumeClaims request", usage.pvc_gb,
                              usage.pvc_gb * monthly["ebs_gp3_gb"] / hours))
    if clusters and usage.cross_az_gb_month:
        # Billed in each direction: out of one zone and into the other.
        lines.append(CostLine("cross-AZ data transfer", f"{usage.cross_az_gb_month:g} GB/month between zones assumed "
                              "(eks.estimate_cross_az_gb_month)", usage.cross_az_gb_month,
                              usage.cross_az_gb_month * 2 * per_gb["inter_az_each_way"] / hours))
    for ln in lines:
        ln.monthly = None if ln.hourly is None else ln.hourly * hours
    return CostEstimate(lines=lines, prices=prices, region=region, unpriced=sorted(set(unpriced)), today=today)

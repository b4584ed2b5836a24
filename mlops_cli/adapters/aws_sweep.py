"""What Kubernetes created in AWS outside the stack, and its removal after `down`, scoped to the stack.

A Service of type LoadBalancer makes the cloud controller create a load balancer and `k8s-elb-*` security
groups; a PVC makes the EBS CSI driver create a volume. Pulumi knows none of them, and while they exist the
VPC cannot be deleted. They carry tags that say whose they are:

- load balancers and their security groups: `kubernetes.io/cluster/<cluster>` = `owned` and
  `kubernetes.io/service-name` = <namespace>/<name> (kubernetes/cloud-provider-aws, pkg/providers/v1
  aws_loadbalancer.go / tags.go; `shared` marks what the controller may use but did not create, like our
  subnets);
- EBS CSI volumes: `kubernetes.io/created-for/pvc/namespace`, `.../pvc/name`, `.../pv/name`
  (kubernetes-sigs/aws-ebs-csi-driver, from the external-provisioner's --extra-create-metadata), and
  `kubernetes.io/cluster/<cluster>`, which our StorageClass asks for (`tagSpecification_1`, the driver's
  docs/tagging.md);
- VPC CNI network interfaces: `cluster.k8s.amazonaws.com/name` = <cluster> (aws/amazon-vpc-cni-k8s,
  pkg/awsutils/awsutils.go).

What the sweep takes (`Scope`): only resources in the stack's VPC with the cluster tag's value `owned` (or
the CNI's own tag), volumes only of the claims `down` deleted whose volumes were to be deleted (a volume a
user kept with reclaimPolicy Retain stays), and never a security group EKS made for the cluster (tagged
`aws:eks:cluster-name`: it carries `kubernetes.io/cluster/<name>` = owned too, EKS user guide "View Amazon
EKS security group requirements for clusters") or the VPC's default group. Security groups are left alone
while the cluster exists, and no rule of any group is ever revoked: a group is deleted only after the
network interfaces of the deleted load balancers are gone (an ELB's interfaces outlive it by minutes and
hold its group: DependencyViolation).

botocore is imported inside functions (slow to import). `endpoint_url` points every client at a test server.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..common.errors import MlopsError

CNI_CLUSTER_TAG = "cluster.k8s.amazonaws.com/name"
SERVICE_TAG = "kubernetes.io/service-name"
PVC_NAMESPACE_TAG = "kubernetes.io/created-for/pvc/namespace"
PVC_NAME_TAG = "kubernetes.io/created-for/pvc/name"
EKS_CLUSTER_SG_TAG = "aws:eks:cluster-name"
OWNED = "owned"


def cluster_tag(cluster: str) -> str:
    return f"kubernetes.io/cluster/{cluster}"


@dataclass(frozen=True)
class Scope:
    """What the sweep may touch: this cluster's resources inside this VPC, these claims' volumes."""

    cluster: str
    vpc_id: str
    claims: frozenset[str] = frozenset()   # "<namespace>/<name>" of PVCs `down` deleted with reclaimPolicy Delete


@dataclass(frozen=True)
class Leftover:
    kind: str       # classic-elb, elbv2, security-group, network-interface, volume
    id: str
    detail: str = ""


@dataclass
class SweepReport:
    removed: list[Leftover] = field(default_factory=list)
    failed: list[tuple[Leftover, str]] = field(default_factory=list)
    kept: list[tuple[Leftover, str]] = field(default_factory=list)   # found, deliberately not removed, and why


class Aws:
    """The clients the sweep needs, for one region (and optionally one endpoint, for tests)."""

    def __init__(self, region: str, endpoint_url: str | None = None) -> None:
        import botocore.config
        import botocore.session

        session = botocore.session.get_session()
        cfg = botocore.config.Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3})
        self._make = lambda service: session.create_client(service, region_name=region, endpoint_url=endpoint_url,
                                                            config=cfg)
        self._clients: dict[str, Any] = {}

    def __getattr__(self, service: str) -> Any:
        if service.startswith("_"):
            raise AttributeError(service)
        if service not in self._clients:
            self._clients[service] = self._make(service)
        return self._clients[service]


def _tags(pairs: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in pairs or []}


def classic_elbs(aws: Aws, vpc_id: str | None = None) -> dict[str, dict[str, str]]:
    """Classic load balancers (in `vpc_id` when given) -> their tags."""
    names = [lb["LoadBalancerName"] for page in aws.elb.get_paginator("describe_load_balancers").paginate()
             for lb in page["LoadBalancerDescriptions"] if vpc_id is None or lb.get("VPCId") == vpc_id]
    out: dict[str, dict[str, str]] = {}
    for i in range(0, len(names), 20):  # DescribeTags takes at most 20 names
        for desc in _tag_batches(lambda batch: aws.elb.describe_tags(LoadBalancerNames=batch), names[i:i + 20]):
            out[desc["LoadBalancerName"]] = _tags(desc.get("Tags"))
    return out


def _tag_batches(describe: Callable[[list[str]], dict], batch: list[str]) -> list[dict]:
    """DescribeTags of a batch; a load balancer deleted since the listing fails the whole batch
    (LoadBalancerNotFound), so the rest are asked one by one and the gone one is skipped."""
    import botocore.exceptions

    try:
        return describe(batch)["TagDescriptions"]
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "LoadBalancerNotFound":
            raise
    if len(batch) == 1:
        return []
    return [d for one in batch for d in _tag_batches(describe, [one])]


def v2_elbs(aws: Aws, vpc_id: str | None = None) -> dict[str, dict[str, str]]:
    arns = [lb["LoadBalancerArn"] for page in aws.elbv2.get_paginator("describe_load_balancers").paginate()
            for lb in page["LoadBalancers"] if vpc_id is None or lb.get("VpcId") == vpc_id]
    out: dict[str, dict[str, str]] = {}
    for i in range(0, len(arns), 20):
        for desc in _tag_batches(lambda batch: aws.elbv2.describe_tags(ResourceArns=batch), arns[i:i + 20]):
            out[desc["ResourceArn"]] = _tags(desc.get("Tags"))
    return out


def _ec2(aws: Aws, call: str, result: str, filters: list[dict[str, Any]]) -> list[dict]:
    return [item for page in aws.ec2.get_paginator(call).paginate(Filters=filters) for item in page[result]]


def _owned(tags: dict[str, str], cluster: str) -> bool:
    return tags.get(cluster_tag(cluster)) == OWNED


def load_balancers(aws: Aws, scope: Scope) -> list[Leftover]:
    found = [Leftover("classic-elb", name, tags.get(SERVICE_TAG, ""))
             for name, tags in classic_elbs(aws, scope.vpc_id).items() if _owned(tags, scope.cluster)]
    return found + [Leftover("elbv2", arn, tags.get(SERVICE_TAG, ""))
                    for arn, tags in v2_elbs(aws, scope.vpc_id).items() if _owned(tags, scope.cluster)]


def leftovers(aws: Aws, scope: Scope) -> tuple[list[Leftover], list[tuple[Leftover, str]]]:
    """(what to delete in the order it can be deleted, what was found and is kept with the reason)."""
    in_vpc = [{"Name": "vpc-id", "Values": [scope.vpc_id]}]
    found = load_balancers(aws, scope)
    kept: list[tuple[Leftover, str]] = []
    enis = _ec2(aws, "describe_network_interfaces", "NetworkInterfaces",
                in_vpc + [{"Name": "status", "Values": ["available"]}])
    found += [Leftover("network-interface", e["NetworkInterfaceId"], e.get("Description", "")) for e in enis
              if _owned(_tags(e.get("TagSet")), scope.cluster)
              or _tags(e.get("TagSet")).get(CNI_CLUSTER_TAG) == scope.cluster]
    for v in _ec2(aws, "describe_volumes", "Volumes", [{"Name": "tag-key", "Values": [cluster_tag(scope.cluster)]},
                                                       {"Name": "status", "Values": ["available"]}]):
        tags = _tags(v.get("Tags"))
        claim = f"{tags.get(PVC_NAMESPACE_TAG, '')}/{tags.get(PVC_NAME_TAG, '')}"
        item = Leftover("volume", v["VolumeId"], claim if tags.get(PVC_NAME_TAG) else "")
        if _owned(tags, scope.cluster) and claim in scope.claims:
            found.append(item)
        else:
            kept.append((item, "not a volume of a claim this `down` deleted (kept: it may hold data someone kept)"))
    for g in _ec2(aws, "describe_security_groups", "SecurityGroups", in_vpc):
        tags, item = _tags(g.get("Tags")), Leftover("security-group", g["GroupId"], g.get("GroupName", ""))
        if not _owned(tags, scope.cluster):
            continue
        if EKS_CLUSTER_SG_TAG in tags or g.get("GroupName") == "default":
            kept.append((item, "EKS's own cluster security group: it goes with the cluster"))
        else:
            found.append(item)
    return found, kept


def cluster_exists(aws: Aws, cluster: str) -> bool:
    import botocore.exceptions

    try:
        aws.eks.describe_cluster(name=cluster)
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return False
        raise
    return True


def pending_release(aws: Aws, cluster: str, services: set[str], claims: set[str]) -> list[Leftover]:
    """Load balancers of the deleted Services and volumes of the deleted PVCs that AWS still holds.

    `services` and `claims` are "<namespace>/<name>"."""
    out = [Leftover("classic-elb", name, tags[SERVICE_TAG]) for name, tags in classic_elbs(aws).items()
           if _owned(tags, cluster) and tags.get(SERVICE_TAG) in services]
    out += [Leftover("elbv2", arn, tags[SERVICE_TAG]) for arn, tags in v2_elbs(aws).items()
            if _owned(tags, cluster) and tags.get(SERVICE_TAG) in services]
    for volume in _ec2(aws, "describe_volumes", "Volumes", [{"Name": "tag-key", "Values": [PVC_NAME_TAG]}]):
        tags = _tags(volume.get("Tags"))
        claim = f"{tags.get(PVC_NAMESPACE_TAG, '')}/{tags.get(PVC_NAME_TAG, '')}"
        if claim in claims and volume.get("State") != "deleted":
            out.append(Leftover("volume", volume["VolumeId"], claim))
    return out


def wait_released(aws: Aws, cluster: str, services: set[str], claims: set[str], *, timeout_s: float,
                  interval_s: float = 5.0, on_wait: Callable[[list[Leftover]], None] = lambda _: None,
                  clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> list[Leftover]:
    """Poll until AWS released what the deleted Services and PVCs held; returns what is still held at timeout."""
    import botocore.exceptions

    deadline = clock() + timeout_s
    while True:
        try:
            held = pending_release(aws, cluster, services, claims)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise MlopsError(f"could not check what AWS still holds for the cluster: {exc}") from None
        if not held or clock() >= deadline:
            return held
        on_wait(held)
        sleep(interval_s)


def elb_interfaces(aws: Aws, scope: Scope, balancers: list[Leftover]) -> list[str]:
    """Network interfaces in the VPC still held by these (deleted) load balancers: "ELB <name>" for a classic
    one, "ELB app|net/<name>/<id>" for an ALB/NLB (the description ELB gives the interfaces it creates)."""
    if not balancers:
        return []
    names = [b.id if b.kind == "classic-elb" else "/".join(b.id.split(":loadbalancer/", 1)[-1].split("/")[:3])
             for b in balancers]
    wanted = {f"ELB {n}" for n in names}
    enis = _ec2(aws, "describe_network_interfaces", "NetworkInterfaces", [{"Name": "vpc-id", "Values": [scope.vpc_id]}])
    return [e["NetworkInterfaceId"] for e in enis if e.get("Description") in wanted]


def _delete(aws: Aws, item: Leftover) -> None:
    if item.kind == "classic-elb":
        aws.elb.delete_load_balancer(LoadBalancerName=item.id)
    elif item.kind == "elbv2":
        aws.elbv2.delete_load_balancer(LoadBalancerArn=item.id)
    elif item.kind == "network-interface":
        aws.ec2.delete_network_interface(NetworkInterfaceId=item.id)
    elif item.kind == "volume":
        aws.ec2.delete_volume(VolumeId=item.id)
    elif item.kind == "security-group":
        aws.ec2.delete_security_group(GroupId=item.id)   # never a revoke: rules of a live group stay as they are
    else:
        raise ValueError(item.kind)


def sweep(aws: Aws, scope: Scope, *, timeout_s: float = 600.0, interval_s: float = 5.0,
          clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> SweepReport:
    """Delete what the cluster left in its VPC; every removal, failure and deliberate keep is reported."""
    import botocore.exceptions

    report = SweepReport()
    try:
        found, report.kept = leftovers(aws, scope)
        live = cluster_exists(aws, scope.cluster)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise MlopsError(f"could not look for what the cluster left in AWS: {exc}",
                         hint=f"check your AWS credentials, then look in VPC {scope.vpc_id} for resources tagged "
                              f"{cluster_tag(scope.cluster)} = owned (load balancers, security groups, volumes, "
                              "network interfaces)") from None
    groups = [f for f in found if f.kind == "security-group"]
    if live:
        report.kept += [(g, f"cluster {scope.cluster} still exists: its security groups are not touched") for g in groups]
        groups = []
    for item in [f for f in found if f.kind != "security-group"]:
        _try(aws, item, report)
    if groups:
        balancers = [r for r in report.removed if r.kind in ("classic-elb", "elbv2")]
        deadline = clock() + timeout_s
        while (held := elb_interfaces(aws, scope, balancers)) and clock() < deadline:
            sleep(interval_s)
        if held:
            report.failed += [(g, f"load balancer interfaces {', '.join(held)} still hold it after {timeout_s:g} s")
                              for g in groups]
            return report
        for group in groups:
            _try(aws, group, report)
    return report


def _try(aws: Aws, item: Leftover, report: SweepReport) -> None:
    import botocore.exceptions

    try:
        _delete(aws, item)
        report.removed.append(item)
    except botocore.exceptions.ClientError as exc:
        report.failed.append((item, exc.response.get("Error", {}).get("Message", str(exc))))


def describe_failure(report: SweepReport) -> MlopsError:
    lines = "; ".join(f"{item.kind} {item.id}: {why}" for item, why in report.failed)
    return MlopsError(f"could not remove what the cluster left in AWS: {lines}",
                      hint="delete them in the EC2 console (filter by the tag kubernetes.io/cluster/<cluster>), "
                           "then re-run `mlops down --target eks`")

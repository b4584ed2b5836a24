"""What Kubernetes created in AWS outside the stack, and its removal after `down`.

A Service of type LoadBalancer makes the cloud controller create a load balancer and `k8s-elb-*` security
groups; a PVC makes the EBS CSI driver create a volume. Pulumi knows none of them, and while they exist the
VPC cannot be deleted. They carry tags that say whose they are:

- load balancers and their security groups: `kubernetes.io/cluster/<cluster>` (owned) and
  `kubernetes.io/service-name` = <namespace>/<name> (kubernetes/cloud-provider-aws, pkg/providers/v1
  aws_loadbalancer.go / tags.go);
- EBS CSI volumes: `kubernetes.io/created-for/pvc/namespace`, `.../pvc/name`, `.../pv/name`
  (kubernetes-sigs/aws-ebs-csi-driver, from the external-provisioner's --extra-create-metadata), and
  `kubernetes.io/cluster/<cluster>`, which our StorageClass asks for (`tagSpecification_1`, the driver's
  docs/tagging.md; the driver adds it on its own only with --k8s-tag-cluster-id);
- VPC CNI network interfaces: `cluster.k8s.amazonaws.com/name` = <cluster> (aws/amazon-vpc-cni-k8s,
  pkg/awsutils/awsutils.go).

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


def cluster_tag(cluster: str) -> str:
    return f"kubernetes.io/cluster/{cluster}"


@dataclass(frozen=True)
class Leftover:
    kind: str       # classic-elb, elbv2, security-group, network-interface, volume
    id: str
    detail: str = ""


@dataclass
class SweepReport:
    removed: list[Leftover] = field(default_factory=list)
    failed: list[tuple[Leftover, str]] = field(default_factory=list)


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


def classic_elbs(aws: Aws) -> dict[str, dict[str, str]]:
    names = [lb["LoadBalancerName"] for page in aws.elb.get_paginator("describe_load_balancers").paginate()
             for lb in page["LoadBalancerDescriptions"]]
    out: dict[str, dict[str, str]] = {}
    for i in range(0, len(names), 20):  # DescribeTags takes at most 20 names
        for desc in aws.elb.describe_tags(LoadBalancerNames=names[i:i + 20])["TagDescriptions"]:
            out[desc["LoadBalancerName"]] = _tags(desc.get("Tags"))
    return out


def v2_elbs(aws: Aws) -> dict[str, dict[str, str]]:
    arns = [lb["LoadBalancerArn"] for page in aws.elbv2.get_paginator("describe_load_balancers").paginate()
            for lb in page["LoadBalancers"]]
    out: dict[str, dict[str, str]] = {}
    for i in range(0, len(arns), 20):
        for desc in aws.elbv2.describe_tags(ResourceArns=arns[i:i + 20])["TagDescriptions"]:
            out[desc["ResourceArn"]] = _tags(desc.get("Tags"))
    return out


def _by_tag_key(aws: Aws, call: str, key: str, result: str, extra: list[dict[str, Any]] | None = None) -> list[dict]:
    filters = [{"Name": "tag-key", "Values": [key]}, *(extra or [])]
    return [item for page in aws.ec2.get_paginator(call).paginate(Filters=filters) for item in page[result]]


def leftovers(aws: Aws, cluster: str) -> list[Leftover]:
    """Everything still tagged as this cluster's, in the order it can be deleted."""
    tag = cluster_tag(cluster)
    found = [Leftover("classic-elb", name, tags.get(SERVICE_TAG, "")) for name, tags in classic_elbs(aws).items()
             if tag in tags]
    found += [Leftover("elbv2", arn, tags.get(SERVICE_TAG, "")) for arn, tags in v2_elbs(aws).items() if tag in tags]
    enis = {e["NetworkInterfaceId"]: e for key in (tag, CNI_CLUSTER_TAG)
            for e in _by_tag_key(aws, "describe_network_interfaces", key, "NetworkInterfaces",
                                 [{"Name": "status", "Values": ["available"]}])
            if key == tag or _tags(e.get("TagSet")).get(CNI_CLUSTER_TAG) == cluster}
    found += [Leftover("network-interface", i, e.get("Description", "")) for i, e in enis.items()]
    found += [Leftover("volume", v["VolumeId"], _tags(v.get("Tags")).get(PVC_NAME_TAG, ""))
              for v in _by_tag_key(aws, "describe_volumes", tag, "Volumes", [{"Name": "status", "Values": ["available"]}])]
    found += [Leftover("security-group", g["GroupId"], g.get("GroupName", ""))
              for g in _by_tag_key(aws, "describe_security_groups", tag, "SecurityGroups")]
    return found


def pending_release(aws: Aws, cluster: str, services: set[str], claims: set[str]) -> list[Leftover]:
    """Load balancers of the deleted Services and volumes of the deleted PVCs that AWS still holds.

    `services` and `claims` are "<namespace>/<name>"."""
    tag = cluster_tag(cluster)
    out = [Leftover("classic-elb", name, tags[SERVICE_TAG]) for name, tags in classic_elbs(aws).items()
           if tag in tags and tags.get(SERVICE_TAG) in services]
    out += [Leftover("elbv2", arn, tags[SERVICE_TAG]) for arn, tags in v2_elbs(aws).items()
            if tag in tags and tags.get(SERVICE_TAG) in services]
    for volume in _by_tag_key(aws, "describe_volumes", PVC_NAME_TAG, "Volumes"):
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
        # Another of the cluster's groups may still allow traffic from this one: drop those rules first.
        group = aws.ec2.describe_security_groups(GroupIds=[item.id])["SecurityGroups"][0]
        if group.get("IpPermissions"):
            aws.ec2.revoke_security_group_ingress(GroupId=item.id, IpPermissions=group["IpPermissions"])
        aws.ec2.delete_security_group(GroupId=item.id)
    else:
        raise ValueError(item.kind)


def sweep(aws: Aws, cluster: str) -> SweepReport:
    """Delete what is still tagged as the cluster's; every removal and failure is reported."""
    import botocore.exceptions

    report = SweepReport()
    try:
        found = leftovers(aws, cluster)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise MlopsError(f"could not look for what the cluster left in AWS: {exc}",
                         hint=f"check your AWS credentials, then look for resources tagged {cluster_tag(cluster)} "
                              "in the EC2 console (load balancers, security groups, volumes, network interfaces)") from None
    for item in found:
        try:
            _delete(aws, item)
            report.removed.append(item)
        except botocore.exceptions.ClientError as exc:
            report.failed.append((item, exc.response.get("Error", {}).get("Message", str(exc))))
    return report


def describe_failure(report: SweepReport) -> MlopsError:
    lines = "; ".join(f"{item.kind} {item.id}: {why}" for item, why in report.failed)
    return MlopsError(f"could not remove what the cluster left in AWS: {lines}",
                      hint="delete them in the EC2 console (filter by the tag kubernetes.io/cluster/<cluster>), "
                           "then re-run `mlops down --target eks`")

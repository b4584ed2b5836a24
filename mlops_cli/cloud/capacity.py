"""Will the platform fit on the EKS node group? Requests of the rendered objects against allocatable capacity.

The platform's requests are summed from the very objects the install applies (charts.platform.all_objects:
our components and the upstream manifests), plus one predictor replica (scale-from-zero needs room for it)
and the EKS system pods that run on every cluster. A node's allocatable capacity follows the EKS AL2023
AMI (awslabs/amazon-eks-ami, nodeadm/internal/kubelet/config.go):

- kube-reserved CPU: 6% of the first core, 1% of the second, 0.5% of cores 3-4, 0.25% of the rest
  (getCPUMillicoresToReserve);
- kube-reserved memory: 11 MiB per pod the node may run + 255 MiB (getMemoryMebibytesToReserve), with
  max pods = ENIs x (IPv4 addresses per ENI - 1) + 2 (nodeadm/internal/kubelet/eni_max_pods.go; the ENI
  figures per type are from nodeadm/internal/kubelet/instance-info.jsonl);
- eviction threshold memory.available 100Mi; no system-reserved;
- the memory the kubelet sees is below the nominal size: 7.5% is taken off, Karpenter's default
  VM_MEMORY_OVERHEAD_PERCENT (aws/karpenter-provider-aws, settings), the same estimate.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

HEADROOM = 0.20                  # keep a fifth of the node group free: rollouts surge, bin-packing is imperfect
VM_MEMORY_OVERHEAD = 0.075
EVICTION_HARD_MIB = 100

# vCPUs, memory MiB (EC2 instance types), ENIs, IPv4 addresses per ENI (amazon-eks-ami instance-info.jsonl).
INSTANCES: dict[str, tuple[int, int, int, int]] = {
    "t3.medium": (2, 4096, 3, 6), "t3.large": (2, 8192, 3, 12), "t3.xlarge": (4, 16384, 4, 15),
    "m5.large": (2, 8192, 3, 10), "m5.xlarge": (4, 16384, 4, 15),
    "m6i.large": (2, 8192, 3, 10), "m6i.xlarge": (4, 16384, 4, 15), "m6i.2xlarge": (8, 32768, 4, 15),
    "m7i.large": (2, 8192, 3, 10), "m7i.xlarge": (4, 16384, 4, 15),
    "c6i.large": (2, 4096, 3, 10), "c6i.xlarge": (4, 8192, 4, 15), "r6i.large": (2, 16384, 3, 10),
    "g4dn.xlarge": (4, 16384, 3, 10), "g4dn.2xlarge": (8, 32768, 3, 10),
    "g5.xlarge": (4, 16384, 4, 15), "g5.2xlarge": (8, 32768, 4, 15), "g6.xlarge": (4, 16384, 4, 15),
}

# Pods EKS and our stack add to every cluster, with their requests (millicores, MiB). Per node: the VPC CNI
# (aws-node: 25m), kube-proxy (100m) and the EBS CSI node plugin (3 containers x 10m/40Mi) DaemonSets.
# Per cluster: CoreDNS (2 x 100m/70Mi), the EBS CSI controller (2 x 6 containers x 10m/40Mi), our
# cluster autoscaler (stacks/addons.py AUTOSCALER_REQUESTS) and the metrics-server add-on.
SYSTEM_PER_NODE = {"aws-node": (25, 0), "kube-proxy": (100, 0), "ebs-csi-node": (30, 120)}
SYSTEM_PER_CLUSTER = {"coredns": (2, 100, 70), "ebs-csi-controller": (2, 60, 240), "cluster-autoscaler": (1, 100, 300),
                      # the metrics-server add-on: the upstream chart's requests (kubernetes-sigs/metrics-server
                      # charts/metrics-server/values.yaml: 100m CPU, 200Mi, one replica)
                      "metrics-server": (1, 100, 200)}
KNATIVE_QUEUE_PROXY = (25, 0)    # Knative's queue-proxy sidecar request (config-deployment queue-sidecar-cpu-request)


def cpu_millis(value: Any) -> int:
    text = str(value)
    return int(text[:-1]) if text.endswith("m") else int(float(text) * 1000)


_MEM_UNITS = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024, "k": 1000 / 1024 ** 2, "M": 1000 ** 2 / 1024 ** 2,
              "G": 1000 ** 3 / 1024 ** 2}


def memory_mib(value: Any) -> float:
    m = re.fullmatch(r"([\d.]+)([A-Za-z]*)", str(value))
    if not m or (m.group(2) and m.group(2) not in _MEM_UNITS):
        raise ValueError(f"not a memory quantity: {value!r}")
    return float(m.group(1)) * (_MEM_UNITS[m.group(2)] if m.group(2) else 1 / 1024 ** 2)


@dataclass(frozen=True)
class Requests:
    cpu_m: float = 0.0
    mem_mib: float = 0.0
    pods: int = 0

    def __add__(self, other: "Requests") -> "Requests":
        return Requests(self.cpu_m + other.cpu_m, self.mem_mib + other.mem_mib, self.pods + other.pods)

    def times(self, n: int) -> "Requests":
        return Requests(self.cpu_m * n, self.mem_mib * n, self.pods * n)


def _larger(a: Requests, b: Requests) -> Requests:
    return Requests(max(a.cpu_m, b.cpu_m), max(a.mem_mib, b.mem_mib), 1)


def pod_requests(pod_spec: dict[str, Any]) -> Requests:
    """Effective requests of one pod: containers summed, or the largest init container if that is bigger."""
    def one(c: dict[str, Any]) -> tuple[float, float]:
        req = (c.get("resources") or {}).get("requests") or {}
        return cpu_millis(req.get("cpu", "0")), memory_mib(req.get("memory", "0"))

    main = [one(c) for c in pod_spec.get("containers") or []]
    init = [one(c) for c in pod_spec.get("initContainers") or []]
    cpu = max([sum(c for c, _ in main), *(c for c, _ in init)])
    mem = max([sum(m for _, m in main), *(m for _, m in init)])
    return Requests(cpu, mem, 1)


@dataclass
class PlatformRequests:
    cluster: Requests = Requests()      # Deployments, StatefulSets, one predictor, system Deployments
    per_node: Requests = Requests()     # DaemonSets, ours and EKS's
    largest_pod: Requests = Requests()
    items: list[tuple[str, Requests]] = field(default_factory=list)


# Labels the kubelet puts on every node (kubernetes.io/docs/reference/labels-annotations-taints): a
# DaemonSet selecting only these runs everywhere. `None`: any value.
EVERY_NODE_LABELS: dict[str, str | None] = {"kubernetes.io/os": "linux", "kubernetes.io/arch": None}


def _runs_on_our_nodes(pod_spec: dict[str, Any], node_labels: Mapping[str, str]) -> bool:
    """Whether a DaemonSet's nodeSelector matches our nodes (e.g. KServe's localmodelnode agent wants
    kserve/localmodel=worker, which no node group of ours carries, so it runs nowhere)."""
    for key, value in (pod_spec.get("nodeSelector") or {}).items():
        if key in EVERY_NODE_LABELS and EVERY_NODE_LABELS[key] in (None, value):
            continue
        if node_labels.get(key) != value:
            return False
    return True


def platform_requests(objects: Iterable[dict[str, Any]], predictor: dict[str, Any] | None = None,
                      node_labels: Mapping[str, str] | None = None) -> PlatformRequests:
    """Sum the rendered objects' requests; `predictor` is the predictor container's resources,
    `node_labels` the labels our node groups give their nodes (DaemonSets that select others run nowhere)."""
    objects = list(objects)
    hpa_min = {(o["metadata"].get("namespace"), o["spec"]["scaleTargetRef"]["name"]): o["spec"].get("minReplicas", 1)
               for o in objects if o.get("kind") == "HorizontalPodAutoscaler"}
    out = PlatformRequests()
    for obj in objects:
        kind = obj.get("kind")
        if kind not in ("Deployment", "StatefulSet", "DaemonSet"):
            continue
        meta = obj["metadata"]
        if kind == "DaemonSet" and not _runs_on_our_nodes(obj["spec"]["template"]["spec"], node_labels or {}):
            continue
        pod = pod_requests(obj["spec"]["template"]["spec"])
        out.largest_pod = _larger(out.largest_pod, pod)
        if kind == "DaemonSet":
            out.per_node += pod
            out.items.append((f"DaemonSet {meta['name']} (per node)", pod))
            continue
        replicas = obj["spec"].get("replicas")
        if replicas is None:
            replicas = hpa_min.get((meta.get("namespace"), meta["name"]), 1)
        out.cluster += pod.times(replicas)
        out.items.append((f"{kind} {meta['name']} x{replicas}", pod.times(replicas)))
    if predictor is not None:
        req = predictor.get("requests") or {}
        pod = Requests(cpu_millis(req.get("cpu", "0")) + KNATIVE_QUEUE_PROXY[0],
                       memory_mib(req.get("memory", "0")) + KNATIVE_QUEUE_PROXY[1], 1)
        out.cluster += pod
        out.largest_pod = _larger(out.largest_pod, pod)
        out.items.append(("predictor x1 (scale from zero needs room for one)", pod))
    for name, (cpu, mem) in SYSTEM_PER_NODE.items():
        out.per_node += Requests(cpu, mem, 1)
        out.items.append((f"EKS DaemonSet {name} (per node)", Requests(cpu, mem, 1)))
    for name, (n, cpu, mem) in SYSTEM_PER_CLUSTER.items():
        out.cluster += Requests(cpu, mem, 1).times(n)
        out.items.append((f"kube-system {name} x{n}", Requests(cpu, mem, 1).times(n)))
    return out


SUBNET_SPLIT_BITS = 4        # stacks/network.py cuts the VPC in 16: each private subnet is VPC prefix + 4
AWS_RESERVED_PER_SUBNET = 5  # the first four and the last address of every subnet (VPC user guide, "Subnet CIDR blocks")


def vpc_address_shortfall(vpc_cidr: str, zones: int, instance_type: str, max_nodes: int) -> str:
    """"" when the private subnets hold what the VPC CNI takes at max_size, else why not. The CNI gives every pod
    a VPC address from its node's ENIs and keeps a whole spare ENI warm (WARM_ENI_TARGET=1, amazon-vpc-cni-k8s
    docs/eni-and-ip-target.md), so a busy node holds ENIs x addresses per ENI; a rolling update adds one node
    per zone at a time."""
    import ipaddress

    if instance_type not in INSTANCES:
        return ""
    _, _, enis, ips = INSTANCES[instance_type]
    prefix = ipaddress.ip_network(vpc_cidr).prefixlen + SUBNET_SPLIT_BITS
    usable = 2 ** (32 - prefix) - AWS_RESERVED_PER_SUBNET
    per_zone = math.ceil(max_nodes / zones) + 1
    need = per_zone * enis * ips
    if need <= usable:
        return ""
    return (f"eks.vpc_cidr = {vpc_cidr} makes /{prefix} private subnets of {usable} usable addresses; {per_zone} "
            f"{instance_type} nodes per zone (max_size {max_nodes} over {zones} zones, plus one during updates) can hold "
            f"{need} VPC CNI addresses ({enis} ENIs x {ips})")


def pvc_gib(objects: Iterable[dict[str, Any]]) -> float:
    """GiB the rendered PersistentVolumeClaims (and StatefulSet claim templates) request."""
    claims = []
    for obj in objects:
        if obj.get("kind") == "PersistentVolumeClaim":
            claims.append(obj)
        elif obj.get("kind") == "StatefulSet":
            claims += [{**t, "replicas": obj["spec"].get("replicas", 1)} for t in obj["spec"].get("volumeClaimTemplates") or []]
    return sum(memory_mib(c["spec"]["resources"]["requests"]["storage"]) / 1024 * c.get("replicas", 1) for c in claims)


@dataclass(frozen=True)
class Allocatable:
    instance_type: str
    cpu_m: float
    mem_mib: float
    max_pods: int


def kube_reserved_cpu_m(vcpus: int) -> float:
    cores = [60.0, 10.0, 5.0, 5.0]
    return sum(cores[:vcpus]) + max(0, vcpus - 4) * 2.5


def allocatable(instance_type: str) -> Allocatable:
    if instance_type not in INSTANCES:
        raise KeyError(instance_type)
    vcpus, mem, enis, ips = INSTANCES[instance_type]
    max_pods = enis * (ips - 1) + 2
    cpu = vcpus * 1000 - kube_reserved_cpu_m(vcpus)
    memory = mem * (1 - VM_MEMORY_OVERHEAD) - (11 * max_pods + 255) - EVICTION_HARD_MIB
    return Allocatable(instance_type, cpu, memory, max_pods)


@dataclass(frozen=True)
class NodePlan:
    instance_type: str
    nodes_needed: int
    per_node: Allocatable
    requests: PlatformRequests

    def summary(self) -> str:
        r, a = self.requests.cluster, self.per_node
        return (f"the platform requests {r.cpu_m / 1000:.2f} vCPU and {r.mem_mib / 1024:.1f} GiB in {r.pods} pods, "
                f"plus {self.requests.per_node.cpu_m:.0f}m CPU and {self.requests.per_node.mem_mib:.0f} MiB of "
                f"DaemonSets per node; one {a.instance_type} offers {a.cpu_m / 1000:.2f} vCPU and "
                f"{a.mem_mib / 1024:.1f} GiB allocatable ({a.max_pods} pods): {self.nodes_needed} nodes with "
                f"{HEADROOM:.0%} headroom")


class DoesNotFit(Exception):
    pass


def plan_nodes(requests: PlatformRequests, instance_type: str) -> NodePlan:
    per = allocatable(instance_type)
    free_cpu = per.cpu_m - requests.per_node.cpu_m
    free_mem = per.mem_mib - requests.per_node.mem_mib
    free_pods = per.max_pods - requests.per_node.pods
    big = requests.largest_pod
    if big.cpu_m > free_cpu or big.mem_mib > free_mem or free_pods < 1:
        raise DoesNotFit(f"one pod requests {big.cpu_m:.0f}m CPU / {big.mem_mib:.0f} MiB; a {instance_type} node has "
                         f"{max(free_cpu, 0):.0f}m / {max(free_mem, 0):.0f} MiB left after its DaemonSets")
    usable = 1 - HEADROOM
    need = max(requests.cluster.cpu_m / (free_cpu * usable), requests.cluster.mem_mib / (free_mem * usable),
               requests.cluster.pods / free_pods)
    return NodePlan(instance_type, max(1, math.ceil(need)), per, requests)


def covers(requests: PlatformRequests, instance_type: str, nodes: int) -> bool:
    """Do `nodes` nodes of this type hold the platform with the headroom kept free?"""
    return plan_nodes(requests, instance_type).nodes_needed <= nodes

"""kwok (sigs.k8s.io/kwok v0.8.0, built by `make controlplane`) as the cluster's node and kubelet.

What kwok decides is what a kubelet and a CNI decide, the data plane: that a scheduled pod is Running and
Ready (its containers "started"), its IP, that a pod being deleted is gone, that the node is Ready (its
Lease renewed). Everything before that is the real control plane's: the ReplicaSet controller creates the
pod, Pod Security admits it, the scheduler binds it to the node; everything after too: the EndpointSlice
controller publishes the Ready pod, the Deployment controller marks the Deployment Available.

kwok's behaviour is its Stages; ours are upstream's `kustomize/stage/{node,pod}/fast` from the kwok module,
with one change: every pod gets the node's IP (as a hostNetwork pod does), and the node's IP is this
machine's. The pods whose program really runs (webhooks, controllers) are processes on this host, so the
API server reaches a webhook Service at <this host>:<targetPort> through the pod's EndpointSlice
(kube-apiserver --enable-aggregator-routing). Loopback cannot be used: EndpointSlice validation refuses
127.0.0.0/8 (k8s.io/kubernetes pkg/apis/core/validation ValidateEndpointIP).

`never_ready` (a jq query over the pod, a value): pods it matches kwok leaves Pending and unready, as a
crashing container's would be: the data plane's verdict on a bad model version (controlplane.BAD_VERSION).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import yaml

NODE = "kwok-node-0"
NODE_ANNOTATION = "kwok.x-k8s.io/node"
POD_IP_UPSTREAM = "PodIPsWith .spec.nodeName ( or .spec.hostNetwork false )"
POD_IP_OURS = "PodIPsWith .spec.nodeName true"


def host_ip() -> str:
    """This machine's first non-loopback IPv4 address (the source address of a route off the host;
    a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
            ip = probe.getsockname()[0]
        except OSError as exc:
            raise RuntimeError(f"no non-loopback IPv4 address on this machine ({exc}): the webhook Services "
                               "of the real control plane are reached at this host's address") from None
    if ip.startswith("127."):
        raise RuntimeError("this machine's only IPv4 address is loopback, which EndpointSlices refuse")
    return ip


def stages(kwok_dir: Path, run_here: tuple[tuple[str, str, str], ...] = (),
           never_ready: tuple[str, str] | None = None) -> list[dict[str, Any]]:
    """Upstream's fast node and pod Stages (pod IP = node IP, above). kwok leaves alone the pods whose
    program runs here, `run_here` (namespace, label key, value): tests/controlplane_programs.py's Kubelet
    marks them Ready once the program answers. Pods `never_ready` matches stay unready."""
    root = kwok_dir / "kustomize" / "stage"
    node = yaml.safe_load((root / "node" / "fast" / "node-initialize.yaml").read_text())
    ready_text = (root / "pod" / "fast" / "pod-ready.yaml").read_text()
    assert POD_IP_UPSTREAM in ready_text, "kwok's pod-ready Stage changed: revisit the pod IP change"
    ready = yaml.safe_load(ready_text.replace(POD_IP_UPSTREAM, POD_IP_OURS))
    for namespace, label, value in run_here:
        ready["spec"]["selector"]["matchExpressions"].append(
            {"key": f'.metadata.namespace + "/" + (.metadata.labels["{label}"] // "")', "operator": "NotIn",
             "values": [f"{namespace}/{value}"]})
    if never_ready:
        query, value = never_ready
        ready["spec"]["selector"]["matchExpressions"].append({"key": query, "operator": "NotIn", "values": [value]})
    pods = [yaml.safe_load((root / "pod" / "fast" / f"{name}.yaml").read_text()) for name in ("pod-complete", "pod-delete")]
    return [node, ready, *pods]


def config(kwok_dir: Path, ip: str, run_here: tuple[tuple[str, str, str], ...] = (),
           never_ready: tuple[str, str] | None = None) -> str:
    options = {"apiVersion": "config.kwok.x-k8s.io/v1alpha1", "kind": "KwokConfiguration",
               "options": {"nodeIP": ip, "nodeLeaseDurationSeconds": 40, "nodeLeaseParallelism": 4,
                           "podPlayStageParallelism": 4, "nodePlayStageParallelism": 4, "podsOnNodeSyncParallelism": 1,
                           "manageNodesWithAnnotationSelector": f"{NODE_ANNOTATION}=fake"}}
    return yaml.safe_dump_all([options, *stages(kwok_dir, run_here, never_ready)], sort_keys=False)


def node(ip: str) -> dict[str, Any]:
    """The one node kwok keeps Ready: room for the whole platform (the scheduler checks requests)."""
    room = {"cpu": "64", "memory": "256Gi", "pods": "250", "ephemeral-storage": "500Gi"}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": NODE, "annotations": {NODE_ANNOTATION: "fake"},
                         "labels": {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux",
                                    "kubernetes.io/arch": "amd64", "type": "kwok"}},
            "spec": {},
            "status": {"allocatable": room, "capacity": room, "addresses": [{"type": "InternalIP", "address": ip}],
                       "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "fake"}}}

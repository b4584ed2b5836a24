"""A project whose `mlops up --target kubernetes` installs the platform on the real control plane
(tests/controlplane.py), and what the cluster must hold first that a real cluster would hold.

What runs for real: the API server, etcd, the controller-manager and scheduler; Knative Serving's
controller, webhook and autoscaler; KServe's manager and its llmisvc program with their webhooks, called
through their Services (tests/controlplane_programs.py runs them as their pods; kwok is the node). Every other pod is created,
admitted and scheduled for real and marked Running by kwok; none of their programs runs.

What the tests supply, each where nothing else can be had:
- a default StorageClass with static PersistentVolumes (as a CSI driver would provision them: storage is
  the data plane); the real PV controller binds the claims;
- cert-manager's CRDs, installed as someone else's cert-manager (field manager `kubectl`), which `up
  --reuse-existing` reuses, since cert-manager's programs are not on the Go module proxy; Certificates
  are issued by tests/controlplane_certmanager.py;
- a KIngress's readiness, Kourier's data plane (tests/controlplane_kourier.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .controlplane import ControlPlane, bin_dir
from .controlplane_programs import PROGRAMS

FOREIGN_MANAGER = "kubectl"
VOLUMES = 6


def prepare(plane: ControlPlane, root: Path, cluster: Any) -> None:
    """A project dir (mlops.toml, the offline bundle of upstream files), storage, a foreign cert-manager."""
    from .upstream_bundle import build_bundle, kubernetes_toml

    bin_dir(tuple(p.program for p in PROGRAMS))  # not built: one line saying what to run
    pins = build_bundle(root / "bundle")
    (root / "mlops.toml").write_text(
        '[project]\nname = "t"\n[serving]\nready_timeout_s = 120.0\n'
        + kubernetes_toml(root / "bundle", pins, plane.kubeconfig, step_timeout_s=180.0))
    storage(cluster)
    foreign_cert_manager(cluster)


def storage(cluster: Any) -> None:
    """A default StorageClass and enough unclaimed PersistentVolumes for one install (claims released by a
    `down --purge` leave theirs Released: a CSI driver would delete them, nothing does here)."""
    cluster.apply({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                   "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                   "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "Immediate"})
    volumes = cluster.list_objects("v1", "PersistentVolume")
    free = [v for v in volumes if not v["spec"].get("claimRef")]
    for i in range(len(volumes), len(volumes) + VOLUMES - len(free)):
        cluster.apply({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"volume-{i}"},
                       "spec": {"capacity": {"storage": "100Gi"}, "storageClassName": "standard",
                                "accessModes": ["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany"],
                                "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": f"/tmp/volume-{i}"}}})


def foreign_cert_manager(cluster: Any) -> None:
    """cert-manager.yaml's CRDs (the real file, tests/upstream_files.py), applied by someone else."""
    from .upstream_files import documents, release_manifest

    crds = [o for o in documents(release_manifest("cert-manager")) if o["kind"] == "CustomResourceDefinition"]
    for crd in crds:
        cluster.request("PATCH", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}",
                        query=[("fieldManager", FOREIGN_MANAGER), ("force", "true")], body=crd,
                        content_type="application/apply-patch+yaml")
    for crd in crds:
        cluster.wait_ready(crd, time.monotonic() + 60)


def installed(cluster: Any) -> bool:
    return cluster.get({"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "kserve-controller-manager", "namespace": "kserve"}}) is not None

"""KServe v0.20.0's REAL controller-manager and admission webhooks on the real control plane
(tests/controlplane.py), installed from its release file install/v0.20.0/kserve.yaml in the
github.com/kserve/kserve v0.20.0 Go module (controlplane/kserve/go.sum pins its hash).

The manager runs with the token of the ServiceAccount that file creates, so its RBAC is the release's.
The one change is envtest's: webhooks are called at 127.0.0.1 (see controlplane.local_webhooks).
"""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

import yaml

from .controlplane import ControlPlane, Process, local_webhooks, module_dir, service_account_kubeconfig
from .support import free_port

KSERVE_NS = "kserve"  # POD_NAMESPACE of the manager; kserve.yaml's objects live there
WEBHOOK_SERVICE = "kserve-webhook-server-service"
# Pods never run here, and cert-manager's kinds (Certificate, Issuer) are not served: the webhook certs
# are ours (the manager reads them from $TMPDIR/k8s-webhook-server/serving-certs, controller-runtime's default)
NOT_APPLIED = {"Deployment", "DaemonSet", "Certificate", "Issuer",
               "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}


def cluster_of(plane: ControlPlane, namespace: str = "default"):
    from mlops_cli.adapters.kube_apply import KubeCluster

    return KubeCluster.connect(str(plane.kubeconfig), "", namespace)


@contextlib.contextmanager
def kserve_running(plane: ControlPlane) -> Iterator[Process]:
    """kserve.yaml applied (CRDs first), its webhook configurations aimed at a local kserve-manager."""
    release = module_dir("kserve", "github.com/kserve/kserve") / "install" / "v0.20.0" / "kserve.yaml"
    objects = [o for o in yaml.load_all(release.read_text(), Loader=yaml.CSafeLoader) if o]  # 7 MB: libyaml
    assert not any(o["kind"] == "Namespace" for o in objects)  # the release leaves the namespace to the installer
    cluster = cluster_of(plane)
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KSERVE_NS}})
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    for crd in crds:
        cluster.learn(crd)
        cluster.apply(crd)
    for crd in crds:
        cluster.wait_ready(crd, deadline=time.monotonic() + 60)
    for obj in objects:
        if obj["kind"] not in NOT_APPLIED and obj["kind"] != "CustomResourceDefinition":
            cluster.apply(obj)

    certs = plane.workdir / "kserve-tmp" / "k8s-webhook-server" / "serving-certs"
    plane.ca.issue("tls", common_name="kserve-webhook", hosts=("127.0.0.1",), directory=certs)
    webhook_port, probe_port = free_port(), free_port()
    config = service_account_kubeconfig(plane, cluster, KSERVE_NS, "kserve-controller-manager")
    manager = plane.start("kserve-manager", [
        "--metrics-addr=0", f"--webhook-port={webhook_port}", f"--health-probe-addr=127.0.0.1:{probe_port}"],
        env={"KUBECONFIG": str(config), "POD_NAMESPACE": KSERVE_NS, "SECRET_NAME": "kserve-webhook-server-cert",
             "TMPDIR": str(certs.parent.parent)})
    plane.timings["kserve-manager ready (s)"] = plane.wait_healthy(
        manager, f"http://127.0.0.1:{probe_port}/readyz", timeout_s=90)
    for hook in local_webhooks(objects, WEBHOOK_SERVICE, webhook_port, plane.ca.pem):
        cluster.apply(hook)
    try:
        yield manager
    finally:
        manager.stop()

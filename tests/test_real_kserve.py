"""Our InferenceService against KServe v0.20.0's REAL controller-manager and its admission webhooks, on the
real control plane (tests/controlplane.py). Everything KServe installs comes from its own release file,
install/v0.20.0/kserve.yaml in the github.com/kserve/kserve v0.20.0 Go module (controlplane/kserve/go.sum
pins its hash); the manager runs with the token of the ServiceAccount that file creates, so its RBAC is
the release's. The one change is envtest's: webhooks are called at 127.0.0.1 (see local_webhooks).
"""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.controlplane import local_webhooks, module_dir, service_account_kubeconfig
from tests.support import free_port

KSERVE_NS = "kserve"  # POD_NAMESPACE of the manager; kserve.yaml's objects live there
WEBHOOK_SERVICE = "kserve-webhook-server-service"
# Pods never run here, and cert-manager's kinds (Certificate, Issuer) are not served: the webhook certs
# are ours (the manager reads them from $TMPDIR/k8s-webhook-server/serving-certs, controller-runtime's default)
NOT_APPLIED = {"Deployment", "DaemonSet", "Certificate", "Issuer",
               "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}


def _cluster(plane, namespace="default"):
    from mlops_cli.adapters.kube_apply import KubeCluster

    return KubeCluster.connect(str(plane.kubeconfig), "", namespace)


@pytest.fixture(scope="module")
def kserve(control_plane):
    """kserve.yaml applied (CRDs first), its webhook configurations aimed at a local kserve-manager."""
    release = module_dir("kserve", "github.com/kserve/kserve") / "install" / "v0.20.0" / "kserve.yaml"
    objects = [o for o in yaml.load_all(release.read_text(), Loader=yaml.CSafeLoader) if o]  # 7 MB: libyaml
    assert not any(o["kind"] == "Namespace" for o in objects)  # the release leaves the namespace to the installer
    cluster = _cluster(control_plane)
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KSERVE_NS}})
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    for crd in crds:
        cluster.learn(crd)
        cluster.apply(crd)
    import time

    for crd in crds:
        cluster.wait_ready(crd, deadline=time.monotonic() + 60)
    for obj in objects:
        if obj["kind"] not in NOT_APPLIED and obj["kind"] != "CustomResourceDefinition":
            cluster.apply(obj)

    certs = control_plane.workdir / "kserve-tmp" / "k8s-webhook-server" / "serving-certs"
    control_plane.ca.issue("tls", common_name="kserve-webhook", hosts=("127.0.0.1",), directory=certs)
    webhook_port, probe_port = free_port(), free_port()
    config = service_account_kubeconfig(control_plane, cluster, KSERVE_NS, "kserve-controller-manager")
    manager = control_plane.start("kserve-manager", [
        "--metrics-addr=0", f"--webhook-port={webhook_port}", f"--health-probe-addr=127.0.0.1:{probe_port}"],
        env={"KUBECONFIG": str(config), "POD_NAMESPACE": KSERVE_NS, "SECRET_NAME": "kserve-webhook-server-cert",
             "TMPDIR": str(certs.parent.parent)})
    control_plane.timings["kserve-manager ready (s)"] = control_plane.wait_healthy(
        manager, f"http://127.0.0.1:{probe_port}/readyz", timeout_s=90)
    for hook in local_webhooks(objects, WEBHOOK_SERVICE, webhook_port, control_plane.ca.pem):
        cluster.apply(hook)
    yield manager
    manager.stop()


def _isvc(namespace, mode):
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": f"check-{mode.lower()}", "namespace": namespace,
                         "annotations": {"serving.kserve.io/deploymentMode": mode}},
            "spec": {"predictor": {"sklearn": {"storageUri": "s3://bucket/model"}}}}


def test_kserve_defaulter_rewrites_the_legacy_serverless_mode(control_plane, kserve):
    """KServe v0.20.0 renamed deploymentMode Serverless to Knative: its defaulting webhook rewrites the annotation
    (pkg/apis/serving/v1beta1/inference_service_defaults.go: LegacyServerless -> Knative)."""
    cluster = _cluster(control_plane)
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "isvc-check"}})
    cluster.apply(_isvc("isvc-check", "Serverless"))
    live = cluster.get(_isvc("isvc-check", "Serverless"))
    assert live["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative", kserve.tail()


def test_our_inference_service_is_stored_as_we_applied_it(control_plane, kserve, project, cli, monkeypatch):
    """What `mlops deploy` applies must come back unchanged from KServe's admission, else every deploy sees
    a change (the InferenceService is compared field by field: kube_apply.UNANNOTATED_KINDS)."""
    from types import SimpleNamespace

    from mlops_cli.adapters import mlflow_tracking
    from mlops_cli.adapters.kube_objects import covers
    from mlops_cli.registry import versions as registry

    # a registered version as tests/test_render.py fakes it (the registry is not what is tested here)
    monkeypatch.setattr(registry, "resolve_version", lambda config, version=None, alias=None: registry.ModelRef(
        name="review-sentiment", version=version or "7", run_id="r", source="models:/m-0123",
        artifact_uri="s3://bucket/mlflow/1/models/m-0123/artifacts", tags={"onnx_int8": "runs:/r/onnx-int8"}))
    monkeypatch.setattr(mlflow_tracking, "get_run", lambda config, run_id: SimpleNamespace(
        info=SimpleNamespace(artifact_uri=f"s3://bucket/mlflow/1/{run_id}/artifacts")))
    (project / "mlops.toml").write_text('[project]\nname = "t"\n[kubernetes]\nmlflow_artifacts = "s3://bucket/mlflow"\n')
    result = cli("render", "--target", "kubernetes", "--deploy", "--version", "3", "-o", "out")
    assert result.exit_code == 0, result.stderr
    index = yaml.safe_load((project / "out" / "index.txt").read_text())
    objects = [o for name in index["files"] for o in yaml.safe_load_all((project / "out" / name).read_text()) if o]
    isvc = next(o for o in objects if o["kind"] == "InferenceService")
    cluster = _cluster(control_plane, isvc["metadata"]["namespace"])
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": isvc["metadata"]["namespace"]}})
    cluster.apply(copy.deepcopy(isvc))
    live = cluster.get(isvc)
    ours = isvc["metadata"]["annotations"]
    theirs = {k: live["metadata"].get("annotations", {}).get(k) for k in ours}
    assert theirs == ours, f"KServe's admission changed our annotations: {ours} -> {theirs}"
    assert covers(live["spec"], isvc["spec"]), _differences(live["spec"], isvc["spec"], "spec")


def _differences(live, want, path):
    """Where the live object lacks or changed a value we set: 'path: ours -> theirs' lines."""
    if isinstance(want, dict) and isinstance(live, dict):
        return [d for k, v in want.items() for d in _differences(live.get(k), v, f"{path}.{k}")]
    if isinstance(want, list) and isinstance(live, list) and len(want) == len(live):
        return [d for i, (lv, wv) in enumerate(zip(live, want)) for d in _differences(lv, wv, f"{path}[{i}]")]
    return [] if live == want else [f"{path}: {want!r} -> {live!r}"]

"""Issue 22 item 3: KServe's storage-initializer against Pod Security `restricted`, decided by the REAL
KServe pod-mutating webhook (v0.20.0, the session's `kserve` fixture) and the REAL PodSecurity admission
of kube-apiserver 1.35.

KServe injects the init container with no securityContext (pkg/utils/storage.go
CreateInitContainerWithConfig) and then merges in the container of the ClusterStorageContainer serving the
URI (pkg/webhook/admission/pod/storage_initializer_injector.go CommonStorageInitialization); our fix is
our own ClusterStorageContainer, named by the InferenceService (charts/kserve.py).

The pod is built as KServe's controller and Knative would build the predictor's: our rendered predictor
container, service account and volumes, the label the pod webhook selects on
(`serving.kserve.io/inferenceservice`, kserve.yaml's pod-mutator objectSelector; mutator.go needMutate) and
the annotations the controller derives from the InferenceService (components/predictor.go
addStorageInitializerAnnotations: the storage URI, and `spec.predictor.storageContainerName`).
No pod runs: what is tested is what the API server admits.
"""

from __future__ import annotations

from tests.controlplane_kserve import cluster_of

SOURCE_URI = "internal.serving.kserve.io/storage-initializer-sourceuri"
CONTAINER_NAME = "internal.serving.kserve.io/storage-container-name"
ISVC_LABEL = "serving.kserve.io/inferenceservice"

S3 = ('[kubernetes]\nnamespace = "{ns}"\nmlflow_artifacts = "s3://bucket/mlflow"\n'
      'predictor_role_arn = "arn:aws:iam::123456789012:role/predictor"\n')
PVC = '[kubernetes]\nnamespace = "{ns}"\n'


def _config(tmp_path, text, ns):
    from mlops_cli.config.loading import load_config

    path = tmp_path / f"{ns}.toml"
    path.write_text('[project]\nname = "t"\n' + text.format(ns=ns))
    return load_config(path)


def _predictor_pod(isvc):
    """The predictor pod as KServe's controller (annotations) and Knative (labels, pod spec) make it."""
    predictor = isvc["spec"]["predictor"]
    (container,) = predictor["containers"]  # [serving].predictor_server = "mlops": our container
    uri = next(e["value"] for e in container["env"] if e["name"] == "STORAGE_URI")  # predictor_custom.go GetStorageUri
    annotations = {SOURCE_URI: uri}
    if predictor.get("storageContainerName"):
        annotations[CONTAINER_NAME] = predictor["storageContainerName"]
    name = isvc["metadata"]["name"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{name}-predictor-00001", "namespace": isvc["metadata"]["namespace"],
                         "labels": {ISVC_LABEL: name, "component": "predictor"}, "annotations": annotations},
            "spec": {"serviceAccountName": predictor["serviceAccountName"], "containers": [container],
                     "volumes": predictor["volumes"]}}


def _install(cluster, config):
    """What `mlops up` applies that the predictor pod needs: the restricted namespace, the predictor's
    service account, the kserve-runtimes step's objects of ours (the ClusterStorageContainer)."""
    from charts import kserve
    from charts.inference_service import predictor_service_account
    from charts.platform import namespace

    cluster.apply(namespace(config))
    cluster.apply(predictor_service_account(config))
    cluster.apply(kserve.storage_container(config))


def test_s3_predictor_pod_gets_a_restricted_storage_initializer(control_plane, kserve, tmp_path):
    from charts.inference_service import render

    config = _config(tmp_path, S3, "si-s3")
    assert config.kubernetes.namespace == "si-s3"
    cluster = cluster_of(control_plane, "si-s3")
    _install(cluster, config)
    isvc = render(config, version="1", source_uri="s3://bucket/mlflow/1/0123/artifacts")
    pod = _predictor_pod(isvc)
    assert pod["metadata"]["annotations"][SOURCE_URI].startswith("s3://")

    cluster.apply(pod)  # refused before the fix: 'violates PodSecurity "restricted:latest"' (storage-initializer)
    live = cluster.get(pod)
    (init,) = live["spec"]["initContainers"]  # injected by KServe's webhook, not by us
    assert init["name"] == "storage-initializer" and init["image"] == "kserve/storage-initializer:v0.20.0", init
    security = init["securityContext"]
    assert security["runAsNonRoot"] is True and security["allowPrivilegeEscalation"] is False, security
    assert security["capabilities"]["drop"] == ["ALL"] and security["seccompProfile"]["type"] == "RuntimeDefault"


def test_without_our_storage_container_the_same_pod_is_refused(control_plane, kserve, tmp_path):
    """The control: the pod KServe builds from an InferenceService that names no ClusterStorageContainer
    (what `mlops deploy` applied before) gets the release's `default` one, and Pod Security refuses it.

    Ours is deleted first: unnamed, KServe takes the first ClusterStorageContainer that supports the URI in
    its cache's List order, which is no order (storage_initializer_injector.go GetStorageContainerSpec), so
    with ours present the pod got ours about as often as `default` (seen failing: DID NOT RAISE)."""
    import time

    from mlops_cli.adapters.kube_apply import KubeApiError

    from charts import kserve as kserve_chart
    from charts.inference_service import render

    config = _config(tmp_path, S3, "si-s3-default")
    cluster = cluster_of(control_plane, "si-s3-default")
    _install(cluster, config)
    ours = kserve_chart.storage_container(config)
    cluster.delete(ours)
    cluster.wait_gone([ours], time.monotonic() + 60)
    isvc = render(config, version="1", source_uri="s3://bucket/mlflow/1/0123/artifacts")
    del isvc["spec"]["predictor"]["storageContainerName"]
    pod = _predictor_pod(isvc)
    deadline = time.monotonic() + 30
    while True:  # KServe's webhook reads a cache: it may still list ours for a moment after the delete
        try:
            cluster.apply(pod)
        except KubeApiError as exc:
            refused = exc
            break
        cluster.delete(pod)
        cluster.wait_gone([pod], time.monotonic() + 30)
        assert time.monotonic() < deadline, "the pod was admitted: KServe still gave it our storage container"
        time.sleep(1)
    message = str(refused)
    assert refused.status == 403 and 'violates PodSecurity "restricted:latest"' in message, message
    assert 'container "storage-initializer"' in message, message


def test_pvc_predictor_pod_is_admitted_without_an_init_container(control_plane, kserve, tmp_path):
    """pvc:// (our MLflow's volume): KServe mounts the claim and injects no init container
    (storage_initializer_injector.go, CommonStorageInitialization: `For PVC source URIs we need to mount
    the source`), so no ClusterStorageContainer is named and the pod is admitted as rendered."""
    from charts.inference_service import render

    config = _config(tmp_path, PVC, "si-pvc")
    cluster = cluster_of(control_plane, "si-pvc")
    _install(cluster, config)
    isvc = render(config, version="1", source_uri="mlflow-artifacts:/1/0123/artifacts")
    assert "storageContainerName" not in isvc["spec"]["predictor"]
    pod = _predictor_pod(isvc)
    assert pod["metadata"]["annotations"][SOURCE_URI].startswith("pvc://mlflow-data/")
    cluster.apply(pod)
    live = cluster.get(pod)
    assert not live["spec"].get("initContainers"), live["spec"].get("initContainers")
    claims = [v["persistentVolumeClaim"]["claimName"] for v in live["spec"]["volumes"] if "persistentVolumeClaim" in v]
    assert claims == ["mlflow-data"], live["spec"]["volumes"]

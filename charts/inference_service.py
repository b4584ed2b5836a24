"""The KServe InferenceService that serves one registered model version.

Runtime `mlops`: a custom predictor container built from our models/ code (charts/images/predictor),
the model files put in /mnt/models by KServe's storage initializer from STORAGE_URI.
Runtime `huggingface`: KServe's huggingface serving runtime reading the same storageUri.

Knative-managed pod: Knative's webhook drops or refuses pod-spec fields its `config-features` flags
do not enable (knative/serving pkg/apis/serving/fieldmask.go, flags in config/core/configmaps/
features.yaml at knative-v1.21.1). With `kubernetes.podspec-securitycontext` disabled (the default,
which we keep) a pod-level securityContext is refused, so every hardening field sits on the container
(`SecurityContextMask` allows runAsUser/Group, runAsNonRoot, allowPrivilegeEscalation, seccompProfile,
capabilities, readOnlyRootFilesystem); the only volume is an emptyDir (`podspec-volumes-emptydir`
is enabled by default).

Pod Security `restricted` (enforced on our namespace): our container satisfies it; Knative's
queue-proxy sidecar does too (knative/serving v1.21.1 pkg/reconciler/revision/resources/queue.go,
queueSecurityContext); a `pvc://` model is mounted without an init container, while `s3://` adds
KServe's storage-initializer, made `restricted` by our ClusterStorageContainer (charts/kserve.py), which
`storageContainerName` names.

KServe reads S3 credentials from the Secrets of the pod's service account (pkg/webhook/admission/pod/
storage_initializer_injector.go, CreateSecretVolumeAndEnv with PodSpec.ServiceAccountName): that is
why `predictor_service_account` lists `predictor-s3` there.

Visibility: labelled `networking.knative.dev/visibility: cluster-local`, so Knative creates no public
route: only callers inside the cluster (the gateway) reach it, at `predictor_url(config)`.
"""

from __future__ import annotations

from typing import Any

from mlops_cli.common.errors import ConfigError
from mlops_cli.config.settings import Config

from .drift import service_overrides
from .image_refs import image_ref
from .objects import container, container_security, labels, resources, selector
from .service_env import config_env

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"
PLURAL = "inferenceservices"
PORT = 8080
MODEL_DIR = "/mnt/models"
UID = 10001
VERSION_ANNOTATION = "mlops.dev/model-version"
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
VISIBILITY_LABEL = "networking.knative.dev/visibility"
STORAGE_CONTAINER = "mlops-storage-initializer"   # our ClusterStorageContainer (charts/kserve.py)
STORAGE_URI_PREFIXES = ("s3://",)   # what it serves (pvc:// needs no init container)


def predictor_url(config: Config) -> str:
    """The one address of the predictor, for the gateway, Prometheus and `mlops deploy`.

    With `disableIstioVirtualHost` (charts/kserve.py: no Istio, Kourier instead) KServe sets the
    InferenceService's status.address.url to `http://<name>-predictor.<ns>.svc.cluster.local`
    (kserve/kserve pkg/controller/v1beta1/inferenceservice/reconcilers/ingress/ingress_reconciler.go,
    getHostPrefix): the Knative Service's cluster-local name, stable across revisions and canaries.
    """
    return f"http://{predictor_host(config)}"


def predictor_host(config: Config) -> str:
    return f"{config.serving.model_name}-predictor.{config.kubernetes.namespace}.svc.cluster.local"


def storage_uri(config: Config, artifact_uri: str) -> str:
    """Where KServe's storage initializer reads the fp32 classifier directory, given the version's
    artifact location (`registry.resolve_version(...).location`: MLflow's get_model_version_download_uri).

    The logged pyfunc model keeps the classifier directory as its artifact `classifier`.
    """
    return cluster_uri(config, artifact_uri) + "/artifacts/classifier"


def cluster_uri(config: Config, artifact_uri: str) -> str:
    """An artifact-store URI as the cluster reads it: `s3://...` with the predictor's own identity
    (`predictor_service_account`); `mlflow-artifacts:/...` (our MLflow serving its PVC) as
    `pvc://mlflow-data/artifacts/...`, which KServe mounts read-only into the predictor pod.
    """
    from .mlflow import ARTIFACTS_DIR, DATA_PVC

    uri = artifact_uri.rstrip("/")
    if uri.startswith("models:/"):
        raise ConfigError(
            f"{artifact_uri!r} names a registered or logged model, not where its files are",
            hint="resolve it with registry.resolve_version (MLflow's get_model_version_download_uri) first")
    if uri.startswith("mlflow-artifacts:"):
        relative = uri.removeprefix("mlflow-artifacts:").lstrip("/")
        return f"pvc://{DATA_PVC}/{ARTIFACTS_DIR.removeprefix('/mlflow/')}/{relative}"
    if not uri.startswith(("s3://", "pvc://")):
        raise ConfigError(
            f"model artifacts at {artifact_uri!r} cannot be read from the cluster",
            hint="register the model against the cluster's MLflow ([registry].tracking_uri) with S3 or PVC artifacts")
    return uri


def pinned_to_mlflow_node(config: Config) -> bool:
    """Models on MLflow's ReadWriteOnce PVC: only pods on MLflow's node can mount it (a pod elsewhere
    fails with Multi-Attach), so predictors get a required podAffinity to the MLflow pod. Knative
    accepts affinity only with `kubernetes.podspec-affinity` enabled: charts/knative.py enables it in
    the same render, for this case only."""
    k = config.kubernetes
    return not k.mlflow_artifacts and k.mlflow_access_mode == "ReadWriteOnce"


PREDICTOR_SERVICE_ACCOUNT = "predictor"
PREDICTOR_S3_SECRET = "predictor-s3"


def predictor_service_account(config: Config) -> dict[str, Any]:
    """The predictor's own identity for model storage: read-only, never MLflow's read-write role.

    S3 on EKS: the IRSA role `[kubernetes].predictor_role_arn`. S3 without IRSA: KServe reads the
    keys of the Secrets listed on the service account (`predictor-s3`, created by you with a read-only
    key: `kubectl create secret generic predictor-s3 --from-literal=AWS_ACCESS_KEY_ID=...
    --from-literal=AWS_SECRET_ACCESS_KEY=...`, the key names KServe's `credentials.s3` config expects).
    """
    from .objects import service_account

    k = config.kubernetes
    annotations = {"eks.amazonaws.com/role-arn": k.predictor_role_arn} if k.predictor_role_arn else None
    sa = service_account(config, PREDICTOR_SERVICE_ACCOUNT, "predictor", annotations)
    if k.mlflow_artifacts.startswith("s3://") and not k.predictor_role_arn:
        sa = {**sa, "secrets": [{"name": PREDICTOR_S3_SECRET}]}
    return sa


def isvc_labels() -> dict[str, str]:
    """Cluster-local: Knative publishes no route on the public ingress for it."""
    return {**labels("predictor"), VISIBILITY_LABEL: "cluster-local"}


def render(config: Config, *, version: str, source_uri: str, canary: int | None = None,
           served_uri: str | None = None) -> dict[str, Any]:
    """The InferenceService of `version`. `served_uri`: the artifact-store directory the predictor
    serves (`serving_runtime.served_artifact_uri`: the onnx-int8 export or the fp32 classifier, as
    [serving].runtime says); default: the fp32 classifier under `source_uri`. Our predictor is told its
    runtime, so a directory that does not fit it fails the pod instead of serving torch unasked."""
    from mlops_cli.registry.serving_runtime import predictor_args

    name = config.serving.model_name
    ns = config.kubernetes.namespace
    uri = cluster_uri(config, served_uri) if served_uri else storage_uri(config, source_uri)
    predictor: dict[str, Any] = {
        "minReplicas": config.serving.min_replicas,
        "maxReplicas": max(config.serving.max_replicas, config.serving.min_replicas, 1),
        # The gateway coalesces requests (services/coalescer.py): a replica is busy with [gateway].predictor_calls
        # calls in flight (one in its passes, one queued), not with Knative's default of 100 requests, which
        # coalesced calls would never reach. KServe maps these onto Knative's autoscaling.knative.dev/metric
        # and /target (kserve/kserve python/kserve/docs/V1beta1ComponentExtensionSpec.md: "concurrency, rps are
        # supported via Knative Pod Autoscaler"; kserve/website .../autoscaling/kpa-autoscaler.md).
        "scaleMetric": "concurrency",
        "scaleTarget": config.gateway.predictor_calls,
    }
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    predictor["serviceAccountName"] = PREDICTOR_SERVICE_ACCOUNT
    if uri.startswith("pvc://") and pinned_to_mlflow_node(config):
        predictor["affinity"] = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": selector("mlflow")}, "topologyKey": "kubernetes.io/hostname"}]}}
    if config.serving.predictor_server == "huggingface":
        predictor["model"] = {
            "modelFormat": {"name": "huggingface"},
            "storageUri": uri,
            "args": [f"--model_name={name}", "--task=sequence_classification"],
            "env": [{"name": "HOME", "value": "/tmp"}, {"name": "HF_HOME", "value": "/tmp/hf"}],
            "resources": resources(config, "predictor"),
            "securityContext": container_security(UID),
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        }
    else:
        c = container(
            config, "predictor", "kserve-container", image_ref(config, "predictor"),
            command=["python", "-m", "models.predictor", "--model-dir", MODEL_DIR, "--model-name", name,
                     "--version", version, "--http-port", str(PORT),
                     *predictor_args(config, cpu=resources(config, "predictor")["requests"]["cpu"])],
            port=PORT, probe_path="/v2/health/ready", uid=UID,  # no pod-level securityContext: see the module doc
            env=[{"name": "STORAGE_URI", "value": uri}, {"name": "HOME", "value": "/tmp"},
                 {"name": "OTEL_SERVICE_NAME", "value": "predictor"},
                 *config_env(config, service_overrides(config))],
        )
        c["ports"] = [{"containerPort": PORT, "protocol": "TCP"}]  # Knative allows one unnamed port
        c["readinessProbe"] = readiness_probe()
        predictor["containers"] = [c]
    predictor["volumes"] = [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]
    if uri.startswith(STORAGE_URI_PREFIXES):  # KServe's init container, made restricted: charts/kserve.py
        predictor["storageContainerName"] = STORAGE_CONTAINER
    annotations = {
        # KServe v0.20.0 calls the Knative mode "Knative"; its defaulting webhook rewrites the old name
        # "Serverless" (pkg/apis/serving/v1beta1/inference_service_defaults.go), so that name never comes back
        DEPLOYMENT_MODE: "Knative",
        VERSION_ANNOTATION: str(version),
    }
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": ns, "labels": isvc_labels(), "annotations": annotations},
        "spec": {"predictor": predictor},
    }


def readiness_probe() -> dict[str, Any]:
    """No periodSeconds (nor the fields Knative then refuses: failureThreshold, timeoutSeconds): with
    periodSeconds 0 queue-proxy probes the container itself every 50 ms until it is ready
    (knative/serving v0.48.2 pkg/queue/readiness/probe.go shouldProbeAggressively, retryInterval), so a pod
    started from zero takes traffic the moment the model is loaded instead of at the kubelet's next 10 s
    probe; pkg/apis/serving/k8s_validation.go validateReadinessProbe refuses failureThreshold and
    timeoutSeconds without periodSeconds. No initialDelaySeconds either: it would only delay a cold start."""
    return {"httpGet": {"path": "/v2/health/ready", "port": PORT}}


def predictor_pods(config: Config) -> dict[str, str]:
    """The label KServe puts on every predictor pod of the InferenceService, whatever its revision."""
    return {"serving.kserve.io/inferenceservice": config.serving.model_name}

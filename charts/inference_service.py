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

Visibility: labelled `networking.knative.dev/visibility: cluster-local`, so Knative creates no public
route: only callers inside the cluster (the gateway) reach it, at `predictor_url(config)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlops_cli.core.config import Config
from mlops_cli.core.errors import ConfigError

from .drift import service_overrides
from .image_refs import image_ref
from .objects import container, container_security, labels, resources
from .service_env import config_env

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"
PLURAL = "inferenceservices"
PORT = 8080
MODEL_DIR = "/mnt/models"
UID = 10001
VERSION_ANNOTATION = "mlops.dev/model-version"
VISIBILITY_LABEL = "networking.knative.dev/visibility"
CRD_SCHEMA_FILE = Path(__file__).resolve().parent / "schemas" / "inferenceservice-crd.json"


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


def storage_uri(config: Config, source: str) -> str:
    """Where KServe downloads the classifier directory from, given the MLflow model artifact URI.

    The logged pyfunc model keeps the classifier directory as its artifact `classifier`.
    `mlflow-artifacts:/...` (served by our MLflow from its PVC) maps to `pvc://mlflow-data/...`.
    """
    from .mlflow import ARTIFACTS_DIR, DATA_PVC

    model = source.rstrip("/")
    if model.startswith("mlflow-artifacts:"):
        relative = model.removeprefix("mlflow-artifacts:").lstrip("/")
        model = f"pvc://{DATA_PVC}/{ARTIFACTS_DIR.removeprefix('/mlflow/')}/{relative}"
    elif not model.startswith(("s3://", "gs://", "https://", "http://", "pvc://")):
        raise ConfigError(
            f"model artifacts at {source!r} cannot be read from the cluster",
            hint="register the model against the cluster's MLflow ([registry].tracking_uri) or S3 artifacts",
        )
    return f"{model}/artifacts/classifier"


def isvc_labels() -> dict[str, str]:
    """Cluster-local: Knative publishes no route on the public ingress for it."""
    return {**labels("predictor"), VISIBILITY_LABEL: "cluster-local"}


def render(config: Config, *, version: str, source_uri: str, canary: int | None = None) -> dict[str, Any]:
    name = config.serving.model_name
    ns = config.kubernetes.namespace
    uri = storage_uri(config, source_uri)
    predictor: dict[str, Any] = {
        "minReplicas": config.serving.min_replicas,
        "maxReplicas": max(config.serving.max_replicas, config.serving.min_replicas, 1),
    }
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    if config.kubernetes.mlflow_role_arn and uri.startswith("s3://"):
        predictor["serviceAccountName"] = "mlflow"  # the IRSA role that can read the artifact bucket
    if config.serving.runtime == "huggingface":
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
                     "--version", version, "--http-port", str(PORT)],
            port=PORT, probe_path="/v2/health/ready", uid=UID,  # no pod-level securityContext: see the module doc
            env=[{"name": "STORAGE_URI", "value": uri}, {"name": "HOME", "value": "/tmp"},
                 {"name": "OTEL_SERVICE_NAME", "value": "predictor"},
                 *config_env(config, service_overrides(config))],
        )
        c["ports"] = [{"containerPort": PORT, "protocol": "TCP"}]  # Knative allows one unnamed port
        predictor["containers"] = [c]
    predictor["volumes"] = [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]
    annotations = {
        "serving.kserve.io/deploymentMode": "Serverless",
        VERSION_ANNOTATION: str(version),
    }
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": ns, "labels": isvc_labels(), "annotations": annotations},
        "spec": {"predictor": predictor},
    }


def crd_schema() -> dict[str, Any]:
    import json

    crd = json.loads(CRD_SCHEMA_FILE.read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

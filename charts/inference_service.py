"""The KServe InferenceService that serves one registered model version.

Runtime `mlops`: a custom predictor container built from our models/ code (charts/images/predictor),
the model files put in /mnt/models by KServe's storage initializer from STORAGE_URI.
Runtime `huggingface`: KServe's huggingface serving runtime reading the same storageUri.

schemas/inferenceservice-crd.json is KServe's v1beta1 CRD trimmed to the predictor fields we render,
with unknown predictor fields forbidden, so tests catch a misspelt or misplaced field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlops_cli.core.config import Config
from mlops_cli.core.errors import ConfigError

from .drift import service_overrides
from .objects import container, container_security, labels, pod_security, resources
from .service_env import config_env

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"
PLURAL = "inferenceservices"
PORT = 8080
MODEL_DIR = "/mnt/models"
VERSION_ANNOTATION = "mlops.dev/model-version"
CRD_SCHEMA_FILE = Path(__file__).resolve().parent / "schemas" / "inferenceservice-crd.json"


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
    if config.serving.predictor_server == "huggingface":
        predictor["model"] = {
            "modelFormat": {"name": "huggingface"},
            "storageUri": uri,
            "args": [f"--model_name={name}", "--task=sequence_classification"],
            "env": [{"name": "HOME", "value": "/tmp"}, {"name": "HF_HOME", "value": "/tmp/hf"}],
            "resources": resources(config, "predictor"),
            "securityContext": container_security(),
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        }
    else:
        c = container(
            config, "predictor", "kserve-container", config.serving.predictor_image,
            command=["python", "-m", "models.predictor", "--model-dir", MODEL_DIR, "--model-name", name,
                     "--version", version, "--http-port", str(PORT)],
            port=PORT, probe_path="/v2/health/ready",
            env=[{"name": "STORAGE_URI", "value": uri}, {"name": "HOME", "value": "/tmp"},
                 {"name": "OTEL_SERVICE_NAME", "value": "predictor"},
                 *config_env(config, service_overrides(config))],
        )
        c["ports"] = [{"containerPort": PORT, "protocol": "TCP"}]  # Knative allows one unnamed port
        predictor["containers"] = [c]
    predictor["securityContext"] = pod_security()
    predictor["volumes"] = [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]
    annotations = {
        "serving.kserve.io/deploymentMode": "Serverless",
        VERSION_ANNOTATION: str(version),
    }
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": ns, "labels": labels("predictor"), "annotations": annotations},
        "spec": {"predictor": predictor},
    }


def crd_schema() -> dict[str, Any]:
    import json

    crd = json.loads(CRD_SCHEMA_FILE.read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

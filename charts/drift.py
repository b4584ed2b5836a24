"""Step 7: the drift service, reading the prediction log the gateway writes (shared PVC)."""

from __future__ import annotations

from typing import Any

from mlops_cli.config.settings import Config

from .image_refs import image_ref
from .jaeger import otlp_endpoint
from .mlflow import tracking_uri
from .objects import container, deployment, metadata, selector, service
from .service_env import PREDICTIONS_DIR, config_env

PORT = 8085
PREDICTIONS_PVC = "mlops-predictions"


def predictions_pvc(config: Config) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": [config.kubernetes.predictions_access_mode],
                            "resources": {"requests": {"storage": config.kubernetes.predictions_volume_size}}}
    if config.kubernetes.storage_class:
        spec["storageClassName"] = config.kubernetes.storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": metadata(PREDICTIONS_PVC, "drift", config.kubernetes.namespace), "spec": spec}


def predictions_affinity(config: Config) -> dict[str, Any] | None:
    """What ties every pod that mounts the prediction-log PVC to one node, when that PVC is ReadWriteOnce: such a
    volume attaches to one node ("ReadWriteOnce: the volume can be mounted as read-write by a single node",
    kubernetes.io/docs/concepts/storage/persistent-volumes/#access-modes), and a pod elsewhere hangs in
    ContainerCreating (Multi-Attach error) instead of running. So the affinity to the drift pod is *required*:
    a preferred one would place pods the scheduler cannot see are doomed. None with ReadWriteMany (EFS/NFS)."""
    if config.kubernetes.predictions_access_mode != "ReadWriteOnce":
        return None
    return {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": selector("drift")}, "topologyKey": "kubernetes.io/hostname"}]}}


def service_overrides(config: Config) -> dict[str, Any]:
    return {"registry.tracking_uri": tracking_uri(config), "observability.otlp_endpoint": otlp_endpoint(config)}


def objects(config: Config) -> list[dict[str, Any]]:
    c = container(
        config, "drift", "drift", image_ref(config, "drift"),
        command=["python", "-m", "mlops_cli.services.drift_service", "--host", "0.0.0.0", "--port", str(PORT)],
        port=PORT, probe_path="/healthz",
        env=[*config_env(config, service_overrides(config)), {"name": "HOME", "value": "/tmp"},
             {"name": "OTEL_SERVICE_NAME", "value": "drift"}],
        mounts=[{"name": "predictions", "mountPath": PREDICTIONS_DIR, "readOnly": True}],
    )
    dep = deployment(config, "drift", [c], strategy="Recreate",
                     volumes=[{"name": "predictions", "persistentVolumeClaim": {"claimName": PREDICTIONS_PVC}}])
    return [predictions_pvc(config), dep, service(config, "drift", {"http": (PORT, PORT)})]

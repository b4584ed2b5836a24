"""Step 8: the gateway: Deployment, Service, HPA (CPU; request rate with an adapter); its public route is charts/edge.py.

The gateway talks to the InferenceService's cluster address (`inference_service.predictor_url`), which
is stable across model versions and canaries (KServe splits the traffic behind it), so deploying a
model never restarts the gateway and `up` and `deploy` render the same gateway.

Readiness means "this pod can serve, or answer 503 cleanly": the process is up and answers HTTP
(`/healthz`). It does not wait for a predictor: before the first `mlops deploy`, or while the
predictor scales from zero, a ready gateway answers /predict with 503 `predictor_unavailable`
(and `/readyz` and the `mlops_predictor_ready` gauge say the predictor is not ready). A readiness
probe on `/readyz` would keep every gateway out of its Service until a model is deployed, so `up`
would never converge and clients would get connection errors instead of a 503.
"""

from __future__ import annotations

from typing import Any

from mlops_cli.config.settings import Config

from . import secrets
from .drift import PREDICTIONS_PVC, predictions_affinity, service_overrides
from .image_refs import image_ref
from .inference_service import predictor_url
from .objects import container, deployment, metadata, secret_env, selector, service
from .service_env import PREDICTIONS_DIR, config_env

PORT = 8080
SERVICE_PORT = 80
RPS_METRIC = "mlops_gateway_requests_per_second"  # served to the HPA by a custom-metrics adapter


READINESS_PATH = "/healthz"   # serve, or answer 503 cleanly: never waits for a predictor
LIVENESS_PATH = "/healthz"


def objects(config: Config) -> list[dict[str, Any]]:
    k = config.kubernetes
    env = [
        # In the cluster the predictor may be scaled to zero: the first call waits for a cold start.
        *config_env(config, {**service_overrides(config), "gateway.timeout_s": k.gateway_predictor_timeout_s}),
        {"name": "HOME", "value": "/tmp"},
        {"name": "OTEL_SERVICE_NAME", "value": "gateway"},
        secret_env("MLOPS_GATEWAY_USER", secrets.GATEWAY_AUTH, "user"),
        secret_env("MLOPS_GATEWAY_PASSWORD", secrets.GATEWAY_AUTH, "password"),
        secret_env("MLOPS_GATEWAY_ADMIN_PASSWORD", secrets.ADMIN_AUTH, "password"),  # /admin: not /predict's
    ]
    c = container(
        config, "gateway", "gateway", image_ref(config, "gateway"),
        command=["python", "-m", "mlops_cli.services.gateway", "--host", "0.0.0.0", "--port", str(PORT),
                 "--predictor-url", predictor_url(config)],
        port=PORT, probe_path=READINESS_PATH, live_path=LIVENESS_PATH, env=env,
        mounts=[{"name": "predictions", "mountPath": PREDICTIONS_DIR}],
    )
    dep = deployment(config, "gateway", [c], replicas=None,
                     volumes=[{"name": "predictions", "persistentVolumeClaim": {"claimName": PREDICTIONS_PVC}}])
    pod = dep["spec"]["template"]["spec"]
    affinity = predictions_affinity(config)   # the prediction-log PVC they all write, the drift pod reads
    if affinity:
        pod["affinity"] = affinity   # replicas spread over nodes only with a ReadWriteMany volume, below
    else:
        pod["topologySpreadConstraints"] = [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                             "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": selector("gateway")}}]
    return [dep, service(config, "gateway", {"http": (SERVICE_PORT, PORT)}), hpa(config)]


def hpa(config: Config) -> dict[str, Any]:
    """CPU always (metrics-server's resource metrics); the request rate only when [kubernetes].gateway_target_rps
    says an adapter serves it. The HPA never scales down while any of its metrics cannot be read, though it
    scales up on the others (kubernetes/kubernetes#99514, "hpa: Don't scale down if at least one metric was
    invalid"): a Pods metric nobody serves pinned the gateway at its peak."""
    k = config.kubernetes
    metrics: list[dict[str, Any]] = [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": k.gateway_target_cpu}}}]
    if k.gateway_target_rps:
        metrics.append({"type": "Pods", "pods": {"metric": {"name": RPS_METRIC},
                                                 "target": {"type": "AverageValue", "averageValue": str(k.gateway_target_rps)}}})
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata("gateway", "gateway", k.namespace),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"},
            "minReplicas": k.gateway_min_replicas,
            "maxReplicas": max(k.gateway_max_replicas, k.gateway_min_replicas),
            "metrics": metrics,
        },
    }

"""NetworkPolicies: every pod in our namespace refuses ingress unless a policy below allows it.

`default-deny-ingress` selects every pod; each allow names who may connect, on which port:
  gateway    <- the public edge (Envoy Gateway's proxies, in its namespace) and Prometheus, on 8080
  predictor  <- the gateway, Knative's activator (knative-serving) and Kourier (kourier-system),
               which carry every request in KServe's serverless mode, and Prometheus
  mlflow     <- the drift service and Prometheus only: nothing outside the namespace (people use
               `kubectl port-forward`, which needs their cluster credentials)
  drift      <- Prometheus;  prometheus <- Grafana;  loki <- Promtail (its own namespace), Grafana;
  jaeger     <- our pods (OTLP) and Grafana (query)
Grafana takes no connection but `kubectl port-forward`. Egress is not restricted (DNS, S3, the API
server and the image registries would each need an allow that depends on the cluster).
"""

from __future__ import annotations

from typing import Any

from mlops_cli.core.config import Config

from .edge import CONTROLLER_NAMESPACE
from .objects import PART_OF, metadata, selector

NS_LABEL = "kubernetes.io/metadata.name"


def _from_namespace(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {NS_LABEL: name}}}


def _from(component: str) -> dict[str, Any]:
    return {"podSelector": {"matchLabels": selector(component)}}


def _allow(config: Config, name: str, component: str, pods: dict[str, str], sources: list[dict[str, Any]],
           ports: list[int]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(name, component, config.kubernetes.namespace),
        "spec": {"podSelector": {"matchLabels": pods}, "policyTypes": ["Ingress"],
                 "ingress": [{"from": sources, "ports": [{"protocol": "TCP", "port": p} for p in ports]}]},
    }


def default_deny(config: Config) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": metadata("default-deny-ingress", "platform", config.kubernetes.namespace),
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}


def predictor_policy(config: Config) -> dict[str, Any]:
    from .inference_service import PORT

    # 8012/8022 are Knative's queue-proxy ports in front of the container (HTTP and health), 9091 its metrics
    return _allow(config, "predictor-from-gateway-only", "predictor",
                  {"serving.kserve.io/inferenceservice": config.serving.model_name},
                  [_from("gateway"), _from_namespace("knative-serving"), _from_namespace("kourier-system"), _from("prometheus")],
                  [8012, 8022, 9091, PORT])


def gateway_policy(config: Config) -> dict[str, Any]:
    from .gateway import PORT

    return _allow(config, "gateway-from-ingress", "gateway", selector("gateway"),
                  [_from_namespace(CONTROLLER_NAMESPACE), _from("prometheus")], [PORT])


def objects(config: Config) -> list[dict[str, Any]]:
    from . import drift, grafana, jaeger, loki, mlflow, prometheus

    return [
        default_deny(config),
        predictor_policy(config),
        gateway_policy(config),
        _allow(config, "mlflow-from-namespace-clients", "mlflow", selector("mlflow"),
               [_from("drift"), _from("prometheus")], [mlflow.PORT]),
        _allow(config, "drift-from-prometheus", "drift", selector("drift"), [_from("prometheus")], [drift.PORT]),
        _allow(config, "prometheus-from-grafana", "prometheus", selector("prometheus"), [_from("grafana")], [prometheus.PORT]),
        _allow(config, "loki-from-promtail-and-grafana", "loki", selector("loki"),
               [{**_from_namespace(loki.logs_namespace(config)), **_from("promtail")}, _from("grafana")], [loki.PORT]),
        _allow(config, "jaeger-from-our-pods", "jaeger", selector("jaeger"),
               [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": PART_OF}}},
                {"podSelector": {"matchLabels": {"serving.kserve.io/inferenceservice": config.serving.model_name}}}],
               [jaeger.OTLP_HTTP_PORT, jaeger.OTLP_GRPC_PORT, jaeger.UI_PORT]),
    ]

"""NetworkPolicies: every pod in our namespace refuses ingress unless a policy below allows it.

`default-deny-ingress` selects every pod; each allow names who may connect, on which port:
  gateway    <- the public edge (Envoy Gateway's proxies, in its namespace) and Prometheus, on 8080
  predictor  <- the gateway, Knative's activator (knative-serving) and Kourier (kourier-system),
               which carry every request in KServe's serverless mode, and Prometheus
  mlflow     <- the drift service and Prometheus only: nothing outside the namespace (people use
               `kubectl port-forward`, which needs their cluster credentials)
  drift      <- Prometheus;  prometheus <- Grafana;  loki <- Promtail (its own namespace), Grafana;
  jaeger     <- our pods (OTLP) and Grafana (query)
Grafana takes no connection but `kubectl port-forward`. Knative's autoscaler (knative-serving) also
scrapes each predictor pod's queue-proxy on 9090 (AutoscalingQueueMetricsPort, knative/serving
pkg/networking/constants.go), so that port is open to knative-serving only.

Egress is denied by default too (`default-deny-egress`, here and in the logs namespace); each allow:
  every pod    -> DNS (kube-dns pods in kube-system, UDP and TCP 53)
  gateway      -> the predictor. Its cluster address `<isvc>-predictor.<ns>.svc.cluster.local` is, with
                  Kourier, an ExternalName Service for kourier-internal.kourier-system, whose pods listen on
                  8081 (HTTPPortLocal, knative-extensions/net-kourier pkg/config/config.go); Kourier then
                  forwards to Knative's activator (knative-serving, while scaled to zero or bursting) or
                  to the pod's queue-proxy: those hops are Kourier's and the activator's egress, and the
                  predictor's ingress policy above. So the gateway needs kourier-system:8081 only.
  prometheus   -> gateway 8080, drift 8085, mlflow 5000, each predictor pod on 8080 and its queue-proxy's
                  request metrics on 9091 (scraped one by one, not through Kourier: charts/prometheus.py),
                  and the Kubernetes API (443/6443, any address: its kubernetes_sd_configs list the
                  namespace's pods)
  grafana      -> prometheus 9090, loki 3100, jaeger's query UI 16686
  drift        -> mlflow 5000
  our pods and the predictor -> jaeger OTLP 4318/4317
  mlflow       -> S3 (TCP 443, any address: S3 and STS have no stable range) when artifacts are s3://;
                  the database's port (any address) when `mlflow_backend_uri` names one
  predictor    -> S3 (443) when artifacts are s3:// (KServe's storage-initializer downloads the model)
  promtail     -> loki 3100, and the Kubernetes API (443/6443, any address: its kubernetes_sd_configs
                  list pods; where the API server is, is the cluster's business)
Port numbers in egress rules are the pods' ports: a Service's ClusterIP is translated before the policy
applies (kubernetes.io/docs/concepts/services-networking/network-policies/). Nothing else leaves:
the gateway cannot reach MLflow, the predictor cannot reach MLflow, nobody but the four above
reaches outside the cluster.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from mlops_cli.config.settings import Config

from .edge import CONTROLLER_NAMESPACE
from .inference_service import predictor_pods
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
    policy = _allow(config, "predictor-from-gateway-only", "predictor", predictor_pods(config),
                    [_from("gateway"), _from_namespace("knative-serving"), _from_namespace("kourier-system"), _from("prometheus")],
                    [8012, 8022, 9091, PORT])
    # the autoscaler's own scrape of queue-proxy (AutoscalingQueueMetricsPort)
    policy["spec"]["ingress"].append({"from": [_from_namespace("knative-serving")], "ports": _tcp([9090])})
    return policy


def gateway_policy(config: Config) -> dict[str, Any]:
    from .gateway import PORT

    return _allow(config, "gateway-from-ingress", "gateway", selector("gateway"),
                  [_from_namespace(CONTROLLER_NAMESPACE), _from("prometheus")], [PORT])


def _tcp(ports: list[int]) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def _to(component: str, ports: list[int]) -> dict[str, Any]:
    return {"to": [_from(component)], "ports": _tcp(ports)}


def _anywhere(ports: list[int]) -> dict[str, Any]:
    return {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": _tcp(ports)}


KOURIER_INTERNAL = {"to": [{**_from_namespace("kourier-system"), "podSelector": {"matchLabels": {"app": "3scale-kourier-gateway"}}}],
                    "ports": _tcp([8081])}
DNS = {"to": [{**_from_namespace("kube-system"), "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
       "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}


def _egress(config: Config, name: str, component: str, pods: dict[str, str], rules: list[dict[str, Any]],
            namespace: str | None = None) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": metadata(name, component, namespace or config.kubernetes.namespace),
            "spec": {"podSelector": {"matchLabels": pods}, "policyTypes": ["Egress"], "egress": rules}}


def _deny_egress(config: Config, namespace: str) -> list[dict[str, Any]]:
    """Deny all egress in `namespace`, except DNS for every pod."""
    return [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": metadata("default-deny-egress", "platform", namespace),
             "spec": {"podSelector": {}, "policyTypes": ["Egress"]}},
            {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": metadata("dns", "platform", namespace),
             "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [DNS]}}]


def _database_port(uri: str) -> int | None:
    if not uri:
        return None
    parts = urlsplit(uri)
    scheme = parts.scheme.split("+")[0]
    try:
        return parts.port or {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mssql": 1433}.get(scheme)
    except ValueError:
        return None


def egress_policies(config: Config) -> list[dict[str, Any]]:
    from . import drift, gateway, jaeger, loki, mlflow, prometheus
    from .inference_service import PORT as PREDICTOR_PORT

    k = config.kubernetes
    s3 = k.mlflow_artifacts.startswith("s3://")
    mlflow_out = [_anywhere([443])] if s3 else []
    db_port = _database_port(k.mlflow_backend_uri)
    if db_port:
        mlflow_out.append(_anywhere([db_port]))
    our_pods = {"app.kubernetes.io/part-of": PART_OF}
    tracing = {"to": [_from("jaeger")], "ports": _tcp([jaeger.OTLP_HTTP_PORT, jaeger.OTLP_GRPC_PORT])}
    out = [
        *_deny_egress(config, k.namespace),
        _egress(config, "gateway-to-predictor", "gateway", selector("gateway"), [KOURIER_INTERNAL]),
        _egress(config, "prometheus-to-scrape-targets", "prometheus", selector("prometheus"),
                [_to("gateway", [gateway.PORT]), _to("drift", [drift.PORT]), _to("mlflow", [mlflow.PORT]),
                 {"to": [{"podSelector": {"matchLabels": predictor_pods(config)}}],
                  "ports": _tcp([PREDICTOR_PORT, prometheus.QUEUE_METRICS_PORT])},
                 _anywhere([443, 6443])]),
        _egress(config, "grafana-to-datasources", "grafana", selector("grafana"),
                [_to("prometheus", [prometheus.PORT]), _to("loki", [loki.PORT]), _to("jaeger", [jaeger.UI_PORT])]),
        _egress(config, "drift-to-mlflow", "drift", selector("drift"), [_to("mlflow", [mlflow.PORT])]),
        _egress(config, "our-pods-to-tracing", "jaeger", our_pods, [tracing]),
        _egress(config, "predictor-to-tracing", "jaeger", predictor_pods(config), [tracing]),
    ]
    if mlflow_out:
        out.append(_egress(config, "mlflow-to-storage", "mlflow", selector("mlflow"), mlflow_out))
    if s3:
        out.append(_egress(config, "predictor-to-s3", "predictor", predictor_pods(config), [_anywhere([443])]))
    logs = loki.logs_namespace(config)
    out += [*_deny_egress(config, logs),
            _egress(config, "promtail-to-loki-and-api", "promtail", selector("promtail"),
                    [{"to": [{**_from_namespace(k.namespace), **_from("loki")}], "ports": _tcp([loki.PORT])},
                     _anywhere([443, 6443])], namespace=logs)]
    return out


def objects(config: Config) -> list[dict[str, Any]]:
    from . import drift, grafana, jaeger, loki, mlflow, prometheus

    return [
        default_deny(config),
        *egress_policies(config),
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

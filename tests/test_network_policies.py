"""The rendered NetworkPolicies, decided by a NetworkPolicy evaluator (tests/netpol.py, Kubernetes
semantics from kubernetes.io/docs/concepts/services-networking/network-policies/): default deny in
both directions, each flow the platform needs allowed, flows it does not need refused."""

from __future__ import annotations

import pytest

from tests.netpol import External, Pod, allowed, selects

NS = "ml-prod"
S3 = External("52.216.8.1")       # an s3.us-east-1 address
DB = External("10.0.12.7")        # an RDS instance in the VPC
KUBE_API = External("10.0.0.1")


@pytest.fixture
def render(project):
    from mlops_cli.config.loading import load_config

    def render_with(**kubernetes):
        extra = "".join(f'{k} = "{v}"\n' for k, v in kubernetes.items())
        (project / "mlops.toml").write_text(f'[project]\nname = "t"\n[kubernetes]\nnamespace = "{NS}"\n{extra}')
        config = load_config()
        from charts import network_policies

        return config, network_policies.objects(config)

    return render_with


def _ours(component: str) -> Pod:
    from charts.objects import labels

    return Pod(NS, labels(component))


def _predictor(config) -> Pod:
    return Pod(NS, {"serving.kserve.io/inferenceservice": config.serving.model_name, "app": "sentiment-predictor-00001"})


KUBE_DNS = Pod("kube-system", {"k8s-app": "kube-dns"})
KOURIER = Pod("kourier-system", {"app": "3scale-kourier-gateway"})
ACTIVATOR = Pod("knative-serving", {"app": "activator"})
AUTOSCALER = Pod("knative-serving", {"app": "autoscaler"})


def test_the_evaluator_follows_the_documented_semantics():
    """The examples of the Kubernetes page: namespaceSelector and podSelector in one element are
    ANDed, in two elements ORed; a pod no policy selects is not isolated; ipBlock except."""
    both = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "a", "namespace": "default"},
            "spec": {"podSelector": {"matchLabels": {"role": "db"}}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"user": "alice"}},
                                            "podSelector": {"matchLabels": {"role": "client"}}}]}]}}
    either = {**both, "spec": {**both["spec"], "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"user": "alice"}}},
                                                                     {"podSelector": {"matchLabels": {"role": "client"}}}]}]}}
    db, alice_client, alice_other = Pod("default", {"role": "db"}), Pod("alice", {"role": "client"}), Pod("alice", {"role": "x"})
    labels = {"alice": {"user": "alice"}}
    assert allowed([both], alice_client, db, 5432, namespace_labels=labels)
    assert not allowed([both], alice_other, db, 5432, namespace_labels=labels)
    assert allowed([either], alice_other, db, 5432, namespace_labels=labels)
    assert not allowed([either], Pod("bob", {"role": "x"}), db, 5432, namespace_labels=labels)
    assert allowed([either], Pod("bob", {"role": "x"}), Pod("default", {"role": "web"}), 80)  # not selected: not isolated
    egress = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "e", "namespace": "default"},
              "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                       "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/24", "except": ["10.0.0.128/25"]}}],
                                   "ports": [{"protocol": "TCP", "port": 32000, "endPort": 32768}]}]}}
    assert allowed([egress], db, External("10.0.0.5"), 32100)
    assert not allowed([egress], db, External("10.0.0.200"), 32100)   # except
    assert not allowed([egress], db, External("10.0.0.5"), 31999)     # outside the range
    assert not allowed([egress], db, External("10.0.0.5"), 32100, "UDP")
    deny_all = {**egress, "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}
    assert not allowed([deny_all], db, External("10.0.0.5"), 32100)
    assert selects({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["web"]}]}, {"tier": "db"})
    assert not selects({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {})


def test_every_pod_of_ours_may_resolve_names_and_nothing_else_by_default(render):
    config, policies = render()
    for component in ("gateway", "drift", "mlflow", "prometheus", "grafana", "jaeger", "loki"):
        pod = _ours(component)
        assert allowed(policies, pod, KUBE_DNS, 53, "UDP") and allowed(policies, pod, KUBE_DNS, 53, "TCP"), component
        assert not allowed(policies, pod, Pod("kube-system", {"k8s-app": "metrics-server"}), 53, "UDP"), component
        if component == "prometheus":
            continue  # it lists pods through the API server, whose address is the cluster's (see the flows test)
        assert not allowed(policies, pod, S3, 443), component   # nothing leaves without S3 configured
        assert not allowed(policies, pod, KUBE_API, 443), component
    assert allowed(policies, _predictor(config), KUBE_DNS, 53, "UDP")
    new_thing = Pod(NS, {"app.kubernetes.io/name": "new-thing"})
    assert not allowed(policies, new_thing, _ours("mlflow"), 5000)


def test_the_flows_the_platform_needs_are_allowed(render):
    from charts import drift, gateway, grafana, jaeger, loki, mlflow, prometheus

    config, policies = render()
    gw, prom = _ours("gateway"), _ours("prometheus")
    # gateway -> predictor: the ExternalName to kourier-internal (pods on 8081), then Kourier -> activator
    # or queue-proxy; the activator -> queue-proxy; the autoscaler's scrape of queue-proxy on 9090.
    assert allowed(policies, gw, KOURIER, 8081)
    assert allowed(policies, KOURIER, _predictor(config), 8012)
    assert allowed(policies, ACTIVATOR, _predictor(config), 8012)
    assert allowed(policies, AUTOSCALER, _predictor(config), 9090)
    for target, port in (("gateway", gateway.PORT), ("drift", drift.PORT), ("mlflow", mlflow.PORT)):
        assert allowed(policies, prom, _ours(target), port), target
    # the predictor's /metrics pod by pod (a counter is one process's: charts/prometheus.py), found through the API
    assert allowed(policies, prom, _predictor(config), 8080)
    assert allowed(policies, prom, _predictor(config), 9091)  # queue-proxy's request metrics, pod by pod
    assert not allowed(policies, prom, _predictor(config), 8012)  # never through queue-proxy: that is traffic
    assert allowed(policies, prom, KUBE_API, 443) and allowed(policies, prom, KUBE_API, 6443)
    assert not allowed(policies, prom, KOURIER, 8081)
    assert allowed(policies, _ours("drift"), _ours("mlflow"), mlflow.PORT)
    for target, port in (("prometheus", prometheus.PORT), ("loki", loki.PORT), ("jaeger", jaeger.UI_PORT)):
        assert allowed(policies, _ours("grafana"), _ours(target), port), target
    for source in (gw, _ours("drift"), _ours("mlflow"), _predictor(config)):
        assert allowed(policies, source, _ours("jaeger"), jaeger.OTLP_HTTP_PORT), source
    promtail = Pod(loki.logs_namespace(config), _ours("promtail").labels)
    assert allowed(policies, promtail, _ours("loki"), loki.PORT)
    assert allowed(policies, promtail, KUBE_API, 443) and allowed(policies, promtail, KUBE_API, 6443)
    assert allowed(policies, promtail, KUBE_DNS, 53, "UDP")
    assert grafana.PORT not in {p["port"] for pol in policies for r in pol["spec"].get("ingress", []) for p in r.get("ports", [])}


def test_what_the_platform_does_not_need_is_refused(render):
    from charts import drift, loki, mlflow

    config, policies = render()
    gw = _ours("gateway")
    assert not allowed(policies, gw, _ours("mlflow"), mlflow.PORT)          # the gateway never talks to MLflow
    assert not allowed(policies, gw, _ours("drift"), drift.PORT)
    assert not allowed(policies, gw, ACTIVATOR, 8012)                      # only through Kourier
    assert not allowed(policies, gw, KOURIER, 8080)                        # Kourier's external listener
    assert not allowed(policies, _predictor(config), _ours("mlflow"), mlflow.PORT)
    assert not allowed(policies, _predictor(config), S3, 443)              # models on the PVC: no S3
    assert not allowed(policies, _ours("grafana"), _ours("mlflow"), mlflow.PORT)
    assert not allowed(policies, _ours("mlflow"), gw, 8080)
    assert not allowed(policies, _ours("drift"), KOURIER, 8081)
    assert not allowed(policies, Pod(loki.logs_namespace(config), {"app": "other"}), _ours("loki"), loki.PORT)
    assert not allowed(policies, Pod(loki.logs_namespace(config), _ours("promtail").labels), _ours("mlflow"), mlflow.PORT)
    assert not allowed(policies, _ours("prometheus"), _ours("grafana"), 3000)


def test_s3_and_an_external_database_open_exactly_their_ports(render):
    config, policies = render(mlflow_artifacts="s3://bucket/mlflow",
                              mlflow_backend_uri="postgresql+psycopg://mlflow:secret@db.internal:6432/mlflow")
    mlflow = _ours("mlflow")
    assert allowed(policies, mlflow, S3, 443) and allowed(policies, mlflow, DB, 6432)
    assert not allowed(policies, mlflow, DB, 5432)
    assert allowed(policies, _predictor(config), S3, 443)                  # the storage-initializer's download
    assert not allowed(policies, _predictor(config), DB, 6432)
    assert not allowed(policies, _ours("gateway"), S3, 443) and not allowed(policies, _ours("drift"), S3, 443)
    text = repr(policies)
    assert "secret" not in text and "db.internal" not in text               # the port only, never the URL
    _, default_port = render(mlflow_backend_uri="postgresql://u:p@db.internal/mlflow")
    assert allowed(default_port, mlflow, DB, 5432)

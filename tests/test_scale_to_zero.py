"""Scale to zero that works (issue 22 item 7). Knative counts every request through a revision's route as
traffic, so nothing of ours may poll the predictor through it; a pod started from zero must take traffic
as soon as it is ready; and every hop in front of the predictor must wait longer than a cold start.
Knative facts from knative/serving v0.48.2 (= knative-v1.21.2), named at each test."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.upstream_bundle import build_bundle, kubernetes_toml

# queue-proxy's own ports (knative/serving pkg/networking/constants.go): BackendHTTPPort 8012 (it proxies
# requests to the user container there, counting them), BackendHTTP2Port 8013, QueueAdminPort 8022,
# AutoscalingQueueMetricsPort 9090, UserQueueMetricsPort 9091; all reserved for the user container
# (pkg/apis/serving/k8s_validation.go reservedPorts).
QUEUE_PROXY_PORTS = {8012, 8013, 8022, 9090, 9091}


@pytest.fixture
def config(project):
    from mlops_cli.config.loading import load_config

    pins = build_bundle(project / "bundle")
    (project / "mlops.toml").write_text('[project]\nname = "t"\n' + kubernetes_toml(project / "bundle", pins, namespace="ml"))
    return load_config()


def _relabel(target: dict[str, str], rules: list[dict]) -> dict[str, str] | None:
    """Prometheus's relabelling for the actions our jobs use (replace, keep): the target's labels after
    them, or None when dropped (prometheus/prometheus model/relabel/relabel.go, anchored regexes)."""
    labels = dict(target)
    for rule in rules:
        value = ";".join(labels.get(name, "") for name in rule.get("source_labels", []))
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if rule.get("action", "replace") == "keep":
            if not match:
                return None
        elif match:
            labels[rule["target_label"]] = match.expand(rule.get("replacement", "$1").replace("$1", r"\1"))
    return labels


def _pod_target(container: str, port: int, port_name: str = "") -> dict[str, str]:
    """A kubernetes_sd role pod target of one predictor pod's container port (Prometheus makes one per
    declared port: discovery/kubernetes/pod.go, address pod IP:port, the port's name as a meta label)."""
    return {"__address__": f"10.1.2.3:{port}", "__meta_kubernetes_pod_ip": "10.1.2.3",
            "__meta_kubernetes_pod_name": "sentiment-predictor-00002-deployment-x", "__meta_kubernetes_pod_phase": "Running",
            "__meta_kubernetes_pod_container_name": container, "__meta_kubernetes_pod_container_port_name": port_name,
            "__meta_kubernetes_pod_label_serving_kserve_io_inferenceservice": "sentiment",
            "__meta_kubernetes_pod_label_serving_knative_dev_revision": "sentiment-predictor-00002"}


# queue-proxy's declared ports by name (knative/serving v0.48.2 pkg/reconciler/revision/resources/queue.go
# queueNonServingPorts, queueHTTPPort, queueHTTPSPort; names from pkg/apis/serving/v1/revision_helpers.go)
QUEUE_PROXY_DECLARED = {9090: "http-autometric", 9091: "http-usermetric", 8012: "http", 8112: "https-port"}


def test_prometheus_scrapes_the_predictor_pod_on_the_user_port_never_through_knative(config):
    from charts import inference_service, prometheus

    scrape = prometheus.prometheus_config(config)
    jobs = {j["job_name"]: j for j in scrape["scrape_configs"]}
    predictor_host = inference_service.predictor_host(config).split(".")[0]
    for job in (jobs["predictor"], jobs["queue-proxy"]):
        assert "static_configs" not in job and predictor_host not in yaml.safe_dump(job)  # no Service, no route
        assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["ml"]}}]
    user = _relabel(_pod_target("kserve-container", inference_service.PORT), jobs["predictor"]["relabel_configs"])
    assert user["__address__"] == f"10.1.2.3:{inference_service.PORT}"
    assert user["revision"] == "sentiment-predictor-00002"
    for port in QUEUE_PROXY_PORTS:  # the predictor job drops queue-proxy's targets, whatever port they carry
        assert _relabel(_pod_target("queue-proxy", port), jobs["predictor"]["relabel_configs"]) is None
    assert inference_service.PORT not in QUEUE_PROXY_PORTS


def test_prometheus_scrapes_queue_proxy_per_pod_on_its_request_metrics_port_only(config):
    """Issue 22 item 7: queue-proxy's request metrics, pod by pod, on the port Knative names
    `http-usermetric` (9091); never its proxy port 8012 (a scrape there is a request Knative counts, so the
    revision never scales to zero) nor the autoscaler's 9090."""
    from charts import prometheus

    (job,) = [j for j in prometheus.prometheus_config(config)["scrape_configs"] if j["job_name"] == "queue-proxy"]
    kept = {port: _relabel(_pod_target("queue-proxy", port, name), job["relabel_configs"])
            for port, name in QUEUE_PROXY_DECLARED.items()}
    assert [port for port, target in kept.items() if target] == [9091]
    assert kept[9091]["__address__"] == "10.1.2.3:9091" and kept[9091]["revision"] == "sentiment-predictor-00002"
    assert kept[9091]["component"] == "queue-proxy" and job["metrics_path"] == "/metrics"
    assert _relabel(_pod_target("kserve-container", 9091, "http-usermetric"), job["relabel_configs"]) is None


def test_knative_serves_queue_proxy_request_metrics_in_prometheus_format(config):
    """knative/serving v0.48.2: queue-proxy's request metrics follow `request-metrics-protocol` in
    config-observability (pkg/observability/config.go, NewFromMapWithPrefix("request-")); the default is
    `none`, and only `prometheus` makes it listen on :9091 (pkg/queue/sharedmain/otel.go). The key must
    be one the release documents (charts/configmap_patch.py refuses others)."""
    from charts import knative, upstream

    (observability,) = [o for o in knative.objects(config) if o["kind"] == "ConfigMap"
                        and o["metadata"]["name"] == "config-observability"]
    assert observability["data"]["request-metrics-protocol"] == "prometheus"
    (released,) = [o for o in upstream.load(config, "knative-core") if o["kind"] == "ConfigMap"
                   and o["metadata"]["name"] == "config-observability"]
    assert "request-metrics-protocol: http/protobuf" in released["data"]["_example"]  # documented, not set
    assert "request-metrics-protocol" not in {k for k in released["data"] if k != "_example"}


def knative_refuses_readiness(probe: dict) -> list[str]:
    """knative/serving v0.48.2 pkg/apis/serving/k8s_validation.go validateReadinessProbe: with periodSeconds
    0 (Knative's own aggressive probe) failureThreshold and timeoutSeconds are refused."""
    refused = []
    if probe.get("periodSeconds", 0) == 0:
        refused += [f for f in ("failureThreshold", "timeoutSeconds") if probe.get(f, 0) != 0]
    return refused


def test_predictor_readiness_leaves_probing_to_queue_proxy(config):
    """queue-proxy probes every 50 ms only when periodSeconds is unset (pkg/queue/readiness/probe.go
    shouldProbeAggressively: PeriodSeconds == 0); a periodSeconds makes a cold pod wait for the kubelet's
    next probe, up to that many seconds, while the activator holds the request."""
    from charts import inference_service

    isvc = inference_service.render(config, version="1", source_uri="s3://b/1/r/artifacts/model")
    (c,) = isvc["spec"]["predictor"]["containers"]
    probe = c["readinessProbe"]
    assert "periodSeconds" not in probe and "initialDelaySeconds" not in probe
    assert knative_refuses_readiness(probe) == []
    assert probe["httpGet"]["port"] in (inference_service.PORT, None)
    assert knative_refuses_readiness({**probe, "failureThreshold": 3}) == ["failureThreshold"]  # the checker refuses


def test_every_hop_outlasts_a_predictor_cold_start(config):
    from charts import edge, gateway

    k = config.kubernetes
    assert k.gateway_predictor_timeout_s > k.predictor_cold_start_s
    (container,) = gateway.objects(config)[0]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert float(env["MLOPS_GATEWAY__TIMEOUT_S"]) == k.gateway_predictor_timeout_s  # not [gateway].timeout_s (5 s)
    public, _ = edge.routes(config)
    (rule,) = public["spec"]["rules"]
    request = re.fullmatch(r"(\d{1,5})s", rule["timeouts"]["request"])  # Gateway API Duration, seconds
    assert request and int(request.group(1)) > k.gateway_predictor_timeout_s


def test_a_timeout_shorter_than_the_cold_start_is_refused_at_load(project):
    from mlops_cli.common.errors import ConfigError
    from mlops_cli.config.loading import load_config

    (project / "mlops.toml").write_text('[kubernetes]\npredictor_cold_start_s = 120\ngateway_predictor_timeout_s = 90\n')
    with pytest.raises(ConfigError) as caught:
        load_config()
    text = str(caught.value)
    assert "gateway_predictor_timeout_s (90) must exceed predictor_cold_start_s (120)" in text and "mlops.toml" in text

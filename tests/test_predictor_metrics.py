"""The predictor's per-process request metrics (models/predictor_metrics.py) and the per-pod scrape jobs
that label them by Knative revision (charts/prometheus.py): what the canary gate reads."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from models.predictor_metrics import PredictMetricsMiddleware, PredictorMetrics


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def _app(scope, receive, send):
    status = 200 if scope["path"] != "/v1/models/sentiment:predict" or scope.get("query_string") != b"fail" else 400
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _broken(scope, receive, send):
    raise RuntimeError("model exploded")


def _call(app, path: str, query: bytes = b"") -> int:
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app({"type": "http", "path": path, "query_string": query, "method": "POST", "headers": []}, receive, send))
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


def test_predict_calls_are_counted_by_status_and_timed():
    registry = CollectorRegistry()
    app = PredictMetricsMiddleware(_app, PredictorMetrics(registry))
    assert _value(registry, "mlops_predictor_requests_total", status="500") == 0.0  # exists before any failure
    for path in ("/v1/models/sentiment:predict", "/v2/models/sentiment/infer", "/v2/models/sentiment/versions/3/infer"):
        assert _call(app, path) == 200
    assert _call(app, "/v1/models/sentiment:predict", b"fail") == 400
    for path in ("/metrics", "/v2/health/ready", "/v1/models/sentiment"):
        _call(app, path)
    assert _value(registry, "mlops_predictor_requests_total", status="200") == 3
    assert _value(registry, "mlops_predictor_requests_total", status="400") == 1
    assert _value(registry, "mlops_predictor_request_duration_seconds_count") == 4


def test_an_exception_in_the_model_counts_as_a_500():
    registry = CollectorRegistry()
    app = PredictMetricsMiddleware(_broken, PredictorMetrics(registry))
    with pytest.raises(RuntimeError):
        _call(app, "/v1/models/sentiment:predict")
    assert _value(registry, "mlops_predictor_requests_total", status="500") == 1


def test_the_fault_share_fails_that_share_of_predict_calls_only():
    registry = CollectorRegistry()
    draws = iter([0.1, 0.9, 0.2, 0.95] * 5)
    app = PredictMetricsMiddleware(_app, PredictorMetrics(registry), fault_error_share=0.25, rng=lambda: next(draws))
    statuses = [_call(app, "/v1/models/sentiment:predict") for _ in range(4)]
    assert statuses == [500, 200, 500, 200]
    assert _call(app, "/v2/health/ready") == 200  # probes and metrics are never failed
    assert _value(registry, "mlops_predictor_requests_total", status="500") == 2
    with pytest.raises(ValueError):
        PredictMetricsMiddleware(_app, PredictorMetrics(CollectorRegistry()), fault_error_share=1.5)


def test_the_fault_share_reaches_the_predictor_command_line():
    from mlops_cli.config.loading import load_config
    from mlops_cli.registry.serving_runtime import predictor_args

    assert "--fault-error-share" not in predictor_args(load_config())
    args = predictor_args(load_config().with_overrides({"serving.fault_error_share": 0.3}))
    assert args[args.index("--fault-error-share") + 1] == "0.3"


def test_the_cluster_scrapes_gateway_and_predictor_pod_by_pod_labelled_by_revision(project):
    from charts import prometheus
    from mlops_cli.config.loading import load_config

    config = load_config()
    jobs = {j["job_name"]: j for j in prometheus.prometheus_config(config)["scrape_configs"]}
    for name in ("gateway", "predictor", "drift"):
        job = jobs[name]
        assert "static_configs" not in job, name  # a Service address makes pod switches read as counter resets
        assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": [config.kubernetes.namespace]}}]
        assert {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"} in job["relabel_configs"]
    revision = {"source_labels": ["__meta_kubernetes_pod_label_serving_knative_dev_revision"], "target_label": "revision"}
    assert revision in jobs["predictor"]["relabel_configs"]
    keep = jobs["predictor"]["relabel_configs"][0]
    assert keep == {"source_labels": ["__meta_kubernetes_pod_label_serving_kserve_io_inferenceservice"],
                    "regex": config.serving.model_name, "action": "keep"}
    address = next(r for r in jobs["predictor"]["relabel_configs"] if r.get("target_label") == "__address__")
    assert address["replacement"] == "$1:8080"
    assert {"target_label": "component", "replacement": "predictor"} in jobs["predictor"]["relabel_configs"]


def test_prometheus_may_list_pods_in_its_namespace_only(project):
    from charts import prometheus
    from mlops_cli.config.loading import load_config

    config = load_config()
    objs = {(o["kind"], o["metadata"]["name"]): o for o in prometheus.objects(config)}
    role = objs[("Role", "prometheus")]
    assert role["metadata"]["namespace"] == config.kubernetes.namespace
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    assert objs[("RoleBinding", "prometheus")]["subjects"][0]["name"] == "prometheus"
    pod = objs[("Deployment", "prometheus")]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "prometheus" and pod["automountServiceAccountToken"] is True

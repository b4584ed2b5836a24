"""The observability kit: dashboard and alert rules query only what the running services export,
Prometheus config and rules validate, local Prometheus, JSON logs and traces joined by request id."""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from .drift_support import label_predictions, predict_batches, start_drift_service, start_serving
from .support import REPO, QuietHandler, free_port, http_server, wait_http

OBS = REPO / "charts" / "observability"
DASHBOARD = OBS / "grafana-dashboard.json"
SCRAPE = OBS / "prometheus.yml"
RULES = OBS / "alert-rules.yml"
REQUIRED_ALERTS = {"MlopsGatewayHighErrorRate", "MlopsGatewayHighLatencyP99", "MlopsDataDriftDetected",
                   "MlopsPredictorNotReady"}

# -- PromQL: which metric names does an expression read? ---------------------------------------------

_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                 "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: not functions, keywords, label names, strings or durations."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"', "", expr)                     # strings (label values, templates)
    expr = re.sub(r"\{[^}]*\}", "", expr)                               # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)                              # range selectors
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)  # label lists
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        token, rest = match.group(0), expr[match.end():].lstrip()
        if token.lower() in _PROMQL_WORDS or rest.startswith("("):
            continue
        if match.start() > 0 and (expr[match.start() - 1].isdigit() or expr[match.start() - 1] in "$."):
            continue  # 1e-9, $__rate_interval, 0.5
        names.add(token)
    return names


def test_metric_name_extraction():
    expr = ('histogram_quantile(0.99, sum by (le, route) (rate(mlops_gateway_request_duration_seconds_bucket'
            '{route=~"/predict.*"}[$__rate_interval]))) > 1e-3 and on(instance) up == 1')
    assert metric_names(expr) == {"mlops_gateway_request_duration_seconds_bucket", "up"}
    assert metric_names('time() - mlops_drift_last_run_timestamp_seconds > 3600') == {"mlops_drift_last_run_timestamp_seconds"}


def dashboard_queries() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


# -- static checks -------------------------------------------------------------------------------------

def test_dashboard_is_a_complete_grafana_dashboard():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    titles = " | ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("request rate", "error rate", "p99", "by label", "model version", "drift score",
                  "share of drifted features"):
        assert topic in titles, topic
    for panel in dash["panels"]:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        if panel["type"] != "row":
            assert panel["targets"] and panel["datasource"]["type"] == "prometheus"
    assert dash["templating"]["list"][0]["type"] == "datasource"


def test_rules_and_scrape_config_schema():
    """What promtool checks, in Python: runs everywhere, promtool or not."""
    scrape = yaml.safe_load(SCRAPE.read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    assert {"gateway", "predictor", "drift"} <= set(jobs)
    for job in jobs.values():
        assert job.get("metrics_path", "/metrics").startswith("/")
        assert all(re.fullmatch(r"[\w.-]+:\d+", t) for s in job["static_configs"] for t in s["targets"])
    assert scrape["rule_files"] == [RULES.name]

    rules = alert_rules()
    assert REQUIRED_ALERTS <= {r["alert"] for r in rules}
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, rule["alert"]
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
        assert re.fullmatch(r"\d+[smhd]", rule["for"])
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert metric_names(rule["expr"]), f"{rule['alert']} reads no metric"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)")
def test_promtool_validates_config_and_rules(tmp_path):
    check = subprocess.run(["promtool", "check", "config", str(SCRAPE)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    check = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in check.stdout


# -- against the running services ------------------------------------------------------------------

def exported_names(url: str) -> set[str]:
    text = httpx.get(url + "/metrics", timeout=10).text
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.slow
def test_dashboard_and_alerts_query_only_exported_metrics(registered, tmp_path):
    from mlops_cli.data.data_sources import load_drugscom

    project = registered
    log = tmp_path / "predictions.jsonl"
    env = {"MLOPS_GATEWAY__PREDICTION_LOG": str(log), "MLOPS_DRIFT__INTERVAL": "1s",
           "MLOPS_GATEWAY__FEEDBACK_LOG": str(tmp_path / "feedback.jsonl"), "MLOPS_FEEDBACK__MIN_LABELS": "5"}
    predictor, gateway, gateway_url = start_serving(project, tmp_path, env)
    drift = None
    try:
        predict_batches(gateway_url, [e.text for e in load_drugscom("binary").test[:40]])
        label_predictions(gateway_url, load_drugscom("binary").test[40:48])  # live accuracy (issue 25)
        # A rejected request too, so status-labelled series exist beyond 200.
        assert httpx.post(gateway_url + "/predict", json={}, headers={"X-Request-ID": "obs-denied-1"},
                          timeout=10).status_code == 401
        httpx.get(gateway_url + "/readyz", timeout=10)
        drift, drift_url = start_drift_service(project, tmp_path, env)
        deadline = time.monotonic() + 180  # the first Evidently run is slow on a loaded 2-core machine under coverage
        while time.monotonic() < deadline:
            result = httpx.get(drift_url + "/summary", timeout=5).json()["result"]
            if result and result["status"] == "ok" and httpx.get(drift_url + "/summary").json()["live_quality"]["versions"]:
                break
            time.sleep(0.3)
        assert result and result["status"] == "ok", result

        exported = exported_names(gateway_url) | exported_names(drift_url) | exported_names(predictor.url)
    finally:
        if drift is not None:
            drift.stop()
        gateway.stop()
        predictor.stop()

    for title, expr in dashboard_queries():
        missing = metric_names(expr) - exported
        assert not missing, f"dashboard panel {title!r} queries {missing}, which no service exports"
    for rule in alert_rules():
        missing = metric_names(rule["expr"]) - exported
        assert not missing, f"alert {rule['alert']} reads {missing}, which no service exports"

    # The gateway's request lines are JSON with the request id we sent (probes are debug lines: issue 26, D37).
    entries = [json.loads(line) for line in gateway.stderr_lines() if line.startswith("{")]
    assert any(e.get("request_id") == "obs-denied-1" for e in entries)


# -- local Prometheus ------------------------------------------------------------------------------------

def test_prometheus_command_renders_local_targets(project, tmp_path):
    from mlops_cli.config.loading import load_config
    from mlops_cli.platform.prometheus_local import predictor_targets_path, prometheus_command

    if shutil.which("prometheus") is None:
        pytest.skip("prometheus not installed (apt-get install prometheus)")
    cfg = load_config(overrides={"local.gateway_port": 18080, "local.drift_port": 18085, "local.prometheus_port": 19090})
    path = cfg.state_dir / "local" / "prometheus.yml"
    argv = prometheus_command(cfg, path, predictor_ports=[18090, 18091])
    assert Path(argv[0]).name == "prometheus"
    assert f"--config.file={path}" in argv and "--web.listen-address=127.0.0.1:19090" in argv
    rendered = yaml.safe_load(path.read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in rendered["scrape_configs"]
               if "static_configs" in job}
    assert targets["gateway"] == ["127.0.0.1:18080"] and targets["drift"] == ["127.0.0.1:18085"]
    predictor_file = json.loads(predictor_targets_path(cfg).read_text())
    assert predictor_file[0]["targets"] == ["127.0.0.1:18090", "127.0.0.1:18091"]
    assert (path.parent / "alert-rules.yml").read_text() == RULES.read_text()
    check = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed (apt-get install prometheus)")
def test_local_prometheus_starts_with_our_rules_and_targets(project):
    from mlops_cli.config.loading import load_config
    from mlops_cli.platform.prometheus_local import prometheus_command, write_predictor_targets

    cfg = load_config(overrides={"local.prometheus_port": free_port()})
    first, moved = cfg.local.predictor_port + 1, cfg.local.predictor_port + 2  # where deploys put predictors
    argv = prometheus_command(cfg, cfg.state_dir / "local" / "prometheus.yml", predictor_ports=[first])
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def predictor_instances(targets: list[dict]) -> set[str]:
        return {t["labels"]["instance"] for t in targets if t["labels"]["job"] == "predictor"}

    def active_targets(until, seconds: float = 30.0) -> list[dict]:
        deadline = time.monotonic() + seconds  # service discovery hands targets to the scraper after a few seconds
        while time.monotonic() < deadline:
            targets = httpx.get(url + "/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            if until(targets):
                break
            time.sleep(0.5)
        return targets

    try:
        url = f"http://127.0.0.1:{cfg.local.prometheus_port}"
        wait_http(url + "/-/ready", proc, timeout=30)
        rules = httpx.get(url + "/api/v1/rules", timeout=5).json()["data"]["groups"]
        assert REQUIRED_ALERTS <= {r["name"] for g in rules for r in g["rules"]}
        targets = active_targets(lambda t: predictor_instances(t))
        assert {"gateway", "predictor", "drift"} <= {t["labels"]["job"] for t in targets}
        assert f"127.0.0.1:{cfg.local.gateway_port}" in {t["labels"]["instance"] for t in targets}
        assert predictor_instances(targets) == {f"127.0.0.1:{first}"}
        # D11: `deploy` moved the predictor; the running Prometheus follows, with no reload or restart.
        write_predictor_targets(cfg, [moved])
        targets = active_targets(lambda t: predictor_instances(t) == {f"127.0.0.1:{moved}"})
        assert predictor_instances(targets) == {f"127.0.0.1:{moved}"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_local_prometheus_scrapes_the_predictor_that_serves(project):
    """D11: the scrape config named [local].predictor_port, but every other deploy starts the predictor on
    the next free port: its target was down and the alert fired while serving was fine. The predictor job
    now reads its targets from a file that `deploy` rewrites (file_sd_configs: Prometheus applies a change
    to that file without a reload, prometheus.io/docs/prometheus/latest/configuration/configuration/#file_sd_config)."""
    from mlops_cli.config.loading import load_config
    from mlops_cli.platform.prometheus_local import render_scrape_config, write_predictor_targets

    cfg = load_config()
    jobs = {job["job_name"]: job for job in render_scrape_config(cfg)["scrape_configs"]}
    predictor = jobs["predictor"]
    assert "static_configs" not in predictor
    [sd] = predictor["file_sd_configs"]
    path = write_predictor_targets(cfg, [cfg.local.predictor_port + 1])
    assert sd["files"] == [str(path)] and Path(sd["files"][0]).is_absolute()
    assert json.loads(path.read_text()) == [{"targets": [f"127.0.0.1:{cfg.local.predictor_port + 1}"],
                                             "labels": {"component": "predictor"}}]
    assert json.loads(write_predictor_targets(cfg, []).read_text()) == []  # nothing deployed: no target
    for name in ("gateway", "drift", "prometheus"):
        assert jobs[name]["static_configs"][0]["targets"], name


def test_prometheus_missing_says_how_to_install(project, monkeypatch, tmp_path):
    from mlops_cli.common.errors import PreflightError
    from mlops_cli.config.loading import load_config
    from mlops_cli.platform.prometheus_local import prometheus_command

    monkeypatch.setenv("PATH", str(tmp_path))  # no prometheus binary here
    with pytest.raises(PreflightError) as err:
        prometheus_command(load_config(), tmp_path / "prometheus.yml")
    assert "apt-get install -y prometheus" in str(err.value)
    assert not (tmp_path / "prometheus.yml").exists()


# -- logs and traces -------------------------------------------------------------------------------------

def test_json_log_lines_join_traces_by_request_id():
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from mlops_cli.common.logging_setup import JsonFormatter, build_tracer_provider, request_id_var

    exporter = InMemorySpanExporter()
    provider = build_tracer_provider("mlops-test", exporter)
    tracer = provider.get_tracer("test")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("test-service"))
    logger = logging.getLogger("mlops.test.join")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    token = request_id_var.set("req-join-1")
    try:
        with tracer.start_as_current_span("predict") as span:
            logger.info("served", extra={"status": 200})
            ctx = span.get_span_context()
    finally:
        request_id_var.reset(token)
        logger.removeHandler(handler)
    provider.force_flush()
    line = json.loads(stream.getvalue())
    assert line["request_id"] == "req-join-1" and line["service"] == "test-service" and line["status"] == 200
    assert line["trace_id"] == format(ctx.trace_id, "032x") and line["span_id"] == format(ctx.span_id, "016x")
    (finished,) = exporter.get_finished_spans()
    assert finished.attributes["mlops.request_id"] == "req-join-1"
    assert finished.resource.attributes["service.name"] == "mlops-test"


def test_tracing_off_without_endpoint():
    from mlops_cli.common.logging_setup import setup_tracing

    tracer = setup_tracing("mlops-test", "")
    with tracer.start_as_current_span("nothing") as span:
        assert not span.is_recording()


class _Collector(QuietHandler):
    bodies: list[bytes] = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("content-length", 0))
        _Collector.bodies.append((self.path, self.rfile.read(length)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()


@pytest.mark.slow
def test_drift_service_exports_spans_with_the_request_id(registered, tmp_path):
    project = registered
    _Collector.bodies = []
    with http_server(_Collector) as endpoint:
        svc, url = start_drift_service(project, tmp_path, {"MLOPS_OBSERVABILITY__OTLP_ENDPOINT": endpoint,
                                                           "OTEL_BSP_SCHEDULE_DELAY": "100",
                                                           "MLOPS_GATEWAY__PREDICTION_LOG": str(tmp_path / "p.jsonl")})
        try:
            httpx.get(url + "/summary", headers={"X-Request-ID": "trace-me-4711"}, timeout=5)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any(b"trace-me-4711" in body for _, body in _Collector.bodies):
                time.sleep(0.2)
        finally:
            svc.stop()
    assert any(path == "/v1/traces" and b"trace-me-4711" in body for path, body in _Collector.bodies)
    assert any(b"mlops-drift" in body for _, body in _Collector.bodies)
    logged = [json.loads(line) for line in svc.stderr_lines() if '"trace-me-4711"' in line]
    assert logged and all(len(e.get("trace_id", "")) == 32 for e in logged)


def test_logging_dict_config_gives_the_same_json_lines(capsys):
    import logging.config

    from mlops_cli.common.logging_setup import logging_dict_config, request_id_var

    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        logging.config.dictConfig(logging_dict_config("predictor", "info"))
        token = request_id_var.set("req-dict-9")
        logging.getLogger("kserve").info("predicted", extra={"model": "sentiment"})
        request_id_var.reset(token)
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    (line,) = [json.loads(x) for x in capsys.readouterr().err.splitlines() if "predicted" in x]
    assert line["service"] == "predictor" and line["request_id"] == "req-dict-9" and line["model"] == "sentiment"

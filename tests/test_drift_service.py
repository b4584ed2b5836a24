"""The drift service as a real process: schedule, /summary, /report, /metrics, resilience, JSON logs."""

from __future__ import annotations

import json
import math
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .drift_support import MALFORMED_LINES, lines_like_reference, start_drift_service

pytestmark = pytest.mark.slow


def samples(url: str) -> dict[tuple[str, tuple], float]:
    text = httpx.get(url + "/metrics", timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def wait_summary(url: str, predicate, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    body = None
    while time.monotonic() < deadline:
        body = httpx.get(url + "/summary", timeout=5).json()
        if predicate(body):
            return body
        time.sleep(0.3)
    raise AssertionError(f"/summary never matched; last: {json.dumps(body)[:2000]}")


def test_service_recomputes_and_survives_bad_input(registered, reference, tmp_path):
    log = tmp_path / "predictions.jsonl"
    svc, url = start_drift_service(registered, tmp_path, {"MLOPS_GATEWAY__PREDICTION_LOG": str(log),
                                                          "MLOPS_DRIFT__INTERVAL": "1s"})
    try:
        # 1. No log yet: a run completes without a verdict; the gauges say so instead of guessing.
        body = wait_summary(url, lambda b: b["result"] is not None)
        assert body["result"]["status"] == "insufficient_data" and body["error"] is None
        m = samples(url)
        assert math.isnan(m[("mlops_drift_dataset_drift", ())])
        assert m[("mlops_drift_samples_in_window", ())] == 0
        assert m[("mlops_drift_last_run_timestamp_seconds", ())] > time.time() - 60
        report = httpx.get(url + "/report", timeout=5)
        assert report.status_code == 503 and "not enough data" in report.text

        # 2. Predictions of a version the registry does not know: an error in /summary, not a crash.
        log.write_text("".join(lines_like_reference(reference, 35, version="42")))
        body = wait_summary(url, lambda b: b["error"] is not None)
        assert "has no version 42" in body["error"]
        assert httpx.get(url + "/healthz", timeout=5).status_code == 200

        # 3. Version 1 traffic with malformed lines mixed in: a verdict, bad lines counted.
        good = lines_like_reference(reference, 40, seed=5)
        with log.open("a") as fh:
            fh.write("".join(good[:20]) + "".join(MALFORMED_LINES) + "".join(good[20:]))
        body = wait_summary(url, lambda b: b["result"] and b["result"]["status"] == "ok" and b["error"] is None)
        result = body["result"]
        assert result["samples"] == 40 and result["other_version_samples"] == 35
        assert result["malformed_lines"] == len(MALFORMED_LINES)
        assert result["dataset_drift"] is False

        m = samples(url)
        assert m[("mlops_drift_dataset_drift", ())] == 0
        assert m[("mlops_drift_samples_in_window", ())] == 40
        assert m[("mlops_drift_malformed_lines_total", ())] == len(MALFORMED_LINES)
        assert 0 <= m[("mlops_drift_share_drifted_features", ())] < 0.5
        scored = {dict(labels)["feature"] for (name, labels) in m if name == "mlops_drift_feature_score"}
        assert scored == {"text_length", "word_count", "oov_share", "label", "confidence"}
        assert m[("mlops_drift_runs_total", (("outcome", "error"),))] >= 1

        report = httpx.get(url + "/report", timeout=10)
        assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
        assert report.text.lstrip().lower().startswith("<!doctype html>") and report.text.rstrip().endswith("</html>")
    finally:
        svc.stop()


def test_service_logs_json_lines_with_the_request_id(registered, tmp_path):
    svc, url = start_drift_service(registered, tmp_path, {"MLOPS_GATEWAY__PREDICTION_LOG": str(tmp_path / "none.jsonl")})
    try:
        r = httpx.get(url + "/summary", headers={"X-Request-ID": "req-drift-123"}, timeout=5)
        assert r.headers["x-request-id"] == "req-drift-123"
        generated = httpx.get(url + "/healthz", timeout=5).headers["x-request-id"]
        assert len(generated) == 32
        # A header that could forge log content is replaced, not echoed.
        forged = httpx.get(url + "/healthz", headers={"X-Request-ID": 'x" injected'}, timeout=5)
        assert forged.headers["x-request-id"] != 'x" injected'
    finally:
        svc.stop()
    entries = [json.loads(line) for line in svc.stderr_lines() if line.strip()]  # every line is JSON
    assert all(e["service"] == "drift" and "ts" in e and "level" in e for e in entries)
    requests = [e for e in entries if e["message"] == "request"]
    assert any(e["request_id"] == "req-drift-123" and e["route"] == "/summary" and e["status"] == 200 for e in requests)
    assert any(e["request_id"] == generated for e in requests)
    assert any(e["message"] == "drift run" for e in entries)

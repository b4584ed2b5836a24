"""The drift monitor: recomputes drift on a schedule and serves the latest verdict.

    python -m mlops_cli.services.drift_service --host 127.0.0.1 --port 8085

Routes: GET /healthz, /summary (JSON), /report (the latest Evidently HTML report), /metrics (Prometheus; with
live accuracy on labelled feedback: services/live_metrics.py).
Config comes from MLOPS_CONFIG or ./mlops.toml; it recomputes every [drift].interval over the last
[drift].window of the prediction log. An empty, missing or partly malformed log never stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import threading
import time
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from ..common.errors import MlopsError
from ..config.loading import load_config
from ..config.settings import Config
from .live_metrics import LiveQualityMetrics
from ..common.logging_setup import (REQUEST_ID_HEADER, configure_json_logging, extract_trace_context, incoming_request_id,
                            request_id_var, setup_tracing)

log = logging.getLogger("mlops.drift")


class DriftMetrics:
    """Gauges named in the contract with charts/observability (dashboard and alert rules query them)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.dataset_drift = Gauge("mlops_drift_dataset_drift",
                                   "1 when the last run found dataset drift, 0 when not, NaN without a verdict.",
                                   registry=r)
        self.share = Gauge("mlops_drift_share_drifted_features", "Share of columns Evidently found drifted.",
                           registry=r)
        self.feature_score = Gauge("mlops_drift_feature_score",
                                   "Evidently's drift statistic per column (a p-value or a distance; see `method`).",
                                   ["feature", "method"], registry=r)
        self.feature_drifted = Gauge("mlops_drift_feature_drifted", "1 when the column drifted in the last run.",
                                     ["feature"], registry=r)
        self.samples = Gauge("mlops_drift_samples_in_window",
                             "Predictions of the compared model version inside the window.", registry=r)
        self.malformed = Gauge("mlops_drift_malformed_lines_total",
                               "Malformed lines in the prediction log at the last run (skipped).", registry=r)
        self.last_run = Gauge("mlops_drift_last_run_timestamp_seconds", "Unix time the last run completed.",
                              registry=r)
        self.runs = Counter("mlops_drift_runs", "Drift runs, by outcome (ok, insufficient_data, error).",
                            ["outcome"], registry=r)
        self.dataset_drift.set(math.nan)
        self.share.set(math.nan)

    def observe(self, result) -> None:
        self.samples.set(result.samples)
        self.malformed.set(result.malformed_lines)
        self.last_run.set(time.time())
        self.runs.labels(outcome=result.status).inc()
        self.feature_score.clear()
        self.feature_drifted.clear()
        if not result.has_verdict:
            self.dataset_drift.set(math.nan)
            self.share.set(math.nan)
            return
        self.dataset_drift.set(1 if result.dataset_drift else 0)
        self.share.set(result.share_drifted)
        for f in result.features:
            self.feature_score.labels(feature=f.feature, method=f.method).set(f.score)
            self.feature_drifted.labels(feature=f.feature).set(1 if f.drifted else 0)


class DriftMonitor:
    """Runs monitoring.drift on demand; keeps the latest result, error and report for the routes."""

    def __init__(self, config: Config, report_path: Path | None = None,
                 reference_loader: Callable[[Config, str], Any] | None = None) -> None:
        from ..common.time_window import parse_duration

        self.config = config
        self.interval_s = parse_duration(config.drift.interval, "[drift].interval").total_seconds()
        self.report_path = report_path or config.state_dir / "drift" / "service-report.html"
        self.metrics = DriftMetrics()
        self.live_metrics = LiveQualityMetrics(self.metrics.registry, config.feedback.accuracy_floor)
        self.live = None
        self.result = None
        self.error: str | None = None
        self.error_at: str | None = None
        self._references: dict[str, Any] = {}
        self._reference_loader = reference_loader
        self._lock = threading.Lock()

    def _reference(self, config: Config, version: str):
        # A version's reference never changes once registered: load it from MLflow once per process.
        if version not in self._references:
            if self._reference_loader is not None:
                self._references[version] = self._reference_loader(config, version)
            else:
                from ..monitoring.drift import registry_reference

                self._references[version] = registry_reference(config, version)
        return self._references[version]

    def recompute(self) -> None:
        from ..monitoring import drift
        from ..monitoring.live_quality import live_quality

        with self._lock:
            try:  # labels need no reference or registry: live quality is exported even when drift cannot run
                self.live = live_quality(self.config)
                self.live_metrics.observe(self.live)
            except Exception:
                log.exception("live quality failed")
            started = time.perf_counter()
            try:
                result = drift.run_drift(self.config, output=self.report_path, reference_loader=self._reference)
            except MlopsError as exc:
                self._failed(str(exc))
                return
            except Exception as exc:  # a bad run must not kill the monitor; the next one may succeed
                log.exception("drift run failed")
                self._failed(f"{type(exc).__name__}: {exc}")
                return
            self.result, self.error, self.error_at = result, None, None
            self.metrics.observe(result)
            log.info("drift run", extra={"status": result.status, "samples": result.samples,
                                         "model_version": result.model_version, "dataset_drift": result.dataset_drift,
                                         "share_drifted": result.share_drifted,
                                         "malformed_lines": result.malformed_lines,
                                         "duration_ms": round((time.perf_counter() - started) * 1000, 1)})

    def _failed(self, message: str) -> None:
        self.error, self.error_at = message, datetime.now(timezone.utc).isoformat()
        self.metrics.runs.labels(outcome="error").inc()
        log.error("drift run failed", extra={"error": message})

    def summary(self) -> dict[str, Any]:
        return {"service": "drift", "interval_s": self.interval_s, "window": self.config.drift.window,
                "result": self.result.as_dict() if self.result else None,
                "live_quality": self.live.as_dict() if self.live else None,
                "error": self.error, "error_at": self.error_at}


def create_app(config: Config, monitor: DriftMonitor | None = None) -> FastAPI:
    monitor = monitor or DriftMonitor(config)
    tracer = setup_tracing("mlops-drift", config.observability.otlp_endpoint, config.observability.service_namespace)

    async def schedule() -> None:
        while True:
            await asyncio.to_thread(monitor.recompute)
            await asyncio.sleep(monitor.interval_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        task = asyncio.create_task(schedule())
        try:
            yield
        finally:
            task.cancel()

    app = FastAPI(title="mlops drift monitor", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.monitor = monitor

    @app.middleware("http")
    async def observe(request: Request, call_next):
        rid = incoming_request_id(request.headers.get(REQUEST_ID_HEADER))
        token = request_id_var.set(rid)
        start = time.perf_counter()
        try:
            with tracer.start_as_current_span(f"{request.method} {request.url.path}",
                                              context=extract_trace_context(request.headers)):
                response = await call_next(request)
            response.headers[REQUEST_ID_HEADER] = rid
            log.info("request", extra={"method": request.method, "route": request.url.path,
                                       "status": response.status_code,
                                       "duration_ms": round((time.perf_counter() - start) * 1000, 2)})
            return response
        finally:
            request_id_var.reset(token)

    @app.get("/healthz")
    async def healthz():
        last = monitor.result.computed_at if monitor.result else None
        return {"status": "ok", "last_run": last, "error": monitor.error}

    @app.get("/summary")
    async def summary():
        return JSONResponse(monitor.summary())

    @app.get("/report")
    async def report():
        result = monitor.result
        if result is not None and result.report_path and Path(result.report_path).is_file():
            return FileResponse(result.report_path, media_type="text/html")
        reason = monitor.error or (result.message if result else "the first drift run has not finished yet")
        return HTMLResponse(_no_report_page(reason), status_code=503)

    @app.get("/metrics")
    async def metrics():
        return Response(generate_latest(monitor.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _no_report_page(reason: str) -> str:
    from html import escape

    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>No drift report</title></head>"
            f"<body><h1>No drift report yet</h1><p>{escape(reason)}</p></body></html>")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlops_cli.services.drift_service",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("MLOPS_BIND_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("MLOPS_HTTP_PORT", "8085")))
    args = parser.parse_args(argv)

    config = load_config()
    configure_json_logging("drift", config.observability.log_level)
    try:
        app = create_app(config)
    except MlopsError as exc:
        log.error("cannot start", extra={"error": str(exc)})
        raise SystemExit(exc.exit_code) from None

    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()

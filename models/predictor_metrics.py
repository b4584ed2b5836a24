"""The predictor's own request metrics, by status, per process: what the canary gate judges a revision on.

`mlops_predictor_requests_total{status}` counts every predict call (V1 `/v1/models/<m>:predict`, V2
`/v2/models/<m>/infer`) with the HTTP status it ended with, and `mlops_predictor_request_duration_seconds`
times it. They join KServe's own histograms in prometheus_client's default registry, which KServe's
model server serves on `/metrics` of its HTTP port (kserve/protocol/rest/server.py, `metrics_handler`).
They carry no revision label: Prometheus adds the pod's Knative revision as a target label
(charts/prometheus.py), which the application cannot get wrong. The status children exist from the
start (value 0), so the first failure is an increase Prometheus can see and not a new series.

`fault_error_share` answers that share of predict calls 500 before the model runs: a deliberately
failing version for testing the canary gate (`[serving].fault_error_share`, the e2e run's bad canary).
"""

from __future__ import annotations

import json
import random
import re
import time
from typing import Any, Awaitable, Callable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

PREDICT_PATH = re.compile(r"^/v1/models/[^/]+:predict$|^/v2/models/[^/]+(/versions/[^/]+)?/infer$")
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FAULT_BODY = json.dumps({"error": "injected fault ([serving].fault_error_share)"}).encode()

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class PredictorMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.requests = Counter("mlops_predictor_requests", "Predict calls answered by this predictor, by HTTP status.",
                                ["status"], registry=registry)
        self.latency = Histogram("mlops_predictor_request_duration_seconds", "Predict call latency in this predictor.",
                                 buckets=BUCKETS, registry=registry)
        for status in ("200", "500", "503"):
            self.requests.labels(status=status)


class PredictMetricsMiddleware:
    """ASGI middleware: counts and times predict calls; optionally fails a share of them on purpose."""

    def __init__(self, app: Any, metrics: PredictorMetrics, fault_error_share: float = 0.0,
                 rng: Callable[[], float] = random.random) -> None:
        if not 0.0 <= fault_error_share <= 1.0:
            raise ValueError(f"fault_error_share must be within 0..1, got {fault_error_share}")
        self.app, self.metrics, self.fault_error_share, self.rng = app, metrics, fault_error_share, rng

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or not PREDICT_PATH.match(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception that escapes the app is a 500 to the caller
        try:
            if self.fault_error_share and self.rng() < self.fault_error_share:
                await _answer_500(send)
                return

            async def counted(message: dict[str, Any]) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                await send(message)

            await self.app(scope, receive, counted)
        finally:
            self.metrics.requests.labels(status=str(status)).inc()
            self.metrics.latency.observe(time.perf_counter() - started)


async def _answer_500(send: Send) -> None:
    await send({"type": "http.response.start", "status": 500,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(FAULT_BODY)).encode())]})
    await send({"type": "http.response.body", "body": FAULT_BODY})

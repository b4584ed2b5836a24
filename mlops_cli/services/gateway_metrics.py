"""The gateway's Prometheus metrics (names are a contract with charts/observability)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GatewayMetrics:
    def __init__(self, model_name: str) -> None:
        self.registry = CollectorRegistry()
        self.model_name = model_name
        self.requests = Counter("mlops_gateway_requests_total", "Gateway HTTP requests.",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("mlops_gateway_request_duration_seconds", "Gateway request latency.",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.predictions = Counter("mlops_predictions_total", "Predictions served, by label.",
                                   ["label", "model_version"], registry=self.registry)
        self.model_info = Gauge("mlops_model_info", "The model version the gateway serves (value 1).",
                                ["model_name", "model_version"], registry=self.registry)
        self.predictor_ready = Gauge("mlops_gateway_predictor_ready", "1 when the predictor answered ready.",
                                     registry=self.registry)
        self.predictor_call_texts = Histogram(
            "mlops_gateway_predictor_call_texts", "Texts per call to the predictor (requests coalesced into one call).",
            buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry)
        self.prediction_log_failures = Counter(
            "mlops_prediction_log_write_failures", "Predictions served but not written to the prediction log "
            "(disk full, file unwritable).", registry=self.registry)

        self.canary_percent = Gauge("mlops_gateway_canary_percent",
                                    "Share of requests sent to the canary version (absent: no canary).",
                                    ["model_version"], registry=self.registry)

    def canary(self, model_version: str | None, percent: int = 0) -> None:
        self.canary_percent.clear()
        if model_version is not None:
            self.canary_percent.labels(model_version=str(model_version)).set(percent)

    def serving(self, model_version: str) -> None:
        self.model_info.clear()
        self.model_info.labels(model_name=self.model_name, model_version=str(model_version)).set(1)

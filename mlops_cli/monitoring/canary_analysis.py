"""Should a canary be promoted or rolled back? Decided from the platform's own Prometheus metrics.

The gateway exports `mlops_gateway_requests_total{route,status}`, the latency histogram
`mlops_gateway_request_duration_seconds` and `mlops_predictions_total{model_version}`
(services/gateway_metrics.py; the same series the alert rules in charts/observability use). Over the
observation window we ask Prometheus for the prediction routes' request count, 5xx share and p99 latency,
and how many predictions the canary's version served. The gateway sees both versions, so a canary that
fails every request it gets shows up as roughly its traffic share in the error rate: thresholds are for
the platform as users see it, which is what a canary must not make worse.

Anything short of enough evidence is a rollback: no answer, too few requests, or none served by the
canary (fail safe: promoting on silence is how a broken version reaches 100%).

Example::

    queries = canary_queries(window_s=600, canary_version="4")
    answers = {name: prometheus.query(q) for name, q in queries.items()}   # Prometheus JSON answers
    verdict = decide(answers, CanaryThresholds(max_error_rate=0.01, max_p99_s=1.0, min_requests=50))
    verdict.promote, verdict.reasons
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

PREDICT_ROUTES = 'route=~"/predict.*"'


@dataclass(frozen=True)
class CanaryThresholds:
    max_error_rate: float   # share of prediction requests answered 5xx, e.g. 0.01
    max_p99_s: float        # p99 latency of prediction requests, seconds
    min_requests: int       # fewer requests than this in the window is no evidence


@dataclass(frozen=True)
class CanaryVerdict:
    promote: bool
    requests: float | None
    error_rate: float | None
    p99_s: float | None
    canary_predictions: float | None
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def decision(self) -> str:
        return "promote" if self.promote else "rollback"

    def as_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "requests": self.requests, "error_rate": self.error_rate,
                "p99_s": self.p99_s, "canary_predictions": self.canary_predictions, "reasons": list(self.reasons)}


class PrometheusAnswerError(ValueError):
    """An answer that is not a successful Prometheus instant-query result."""


def canary_queries(window_s: int, canary_version: str) -> dict[str, str]:
    """PromQL instant queries over the last `window_s` seconds (names are what `decide` expects)."""
    w = f"{int(window_s)}s"
    version = str(canary_version).replace("\\", "\\\\").replace('"', '\\"')
    return {
        "requests": f"sum(increase(mlops_gateway_requests_total{{{PREDICT_ROUTES}}}[{w}]))",
        "errors": f'sum(increase(mlops_gateway_requests_total{{{PREDICT_ROUTES},status=~"5.."}}[{w}]))',
        "p99": ("histogram_quantile(0.99, sum by (le) "
                f"(rate(mlops_gateway_request_duration_seconds_bucket{{{PREDICT_ROUTES}}}[{w}])))"),
        "canary_predictions": f'sum(increase(mlops_predictions_total{{model_version="{version}"}}[{w}]))',
    }


def scalar(answer: Mapping[str, Any]) -> float | None:
    """The single value of an instant-query answer; None when it has no sample or the sample is NaN.

    Format (prometheus.io/docs/prometheus/latest/querying/api, "Instant queries" and "Expression query
    result formats"): {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {...},
    "value": [<unix time>, "<sample value as string>"]}]}}; a scalar result is [<time>, "<value>"].
    `sum(...)` over no series is an empty vector; histogram_quantile over zero rates is "NaN".
    """
    if not isinstance(answer, Mapping) or answer.get("status") != "success":
        detail = answer.get("error") if isinstance(answer, Mapping) else None
        raise PrometheusAnswerError(f"Prometheus answered an error: {detail or answer!r}")
    data = answer.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        sample = result
    elif kind == "vector":
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusAnswerError(f"expected one series, got {len(result)}: aggregate the query with sum()")
        sample = result[0].get("value")
    else:
        raise PrometheusAnswerError(f"expected an instant vector or scalar, got resultType {kind!r}")
    try:
        value = float(sample[1])
    except (TypeError, ValueError, IndexError):
        raise PrometheusAnswerError(f"malformed sample {sample!r}") from None
    return None if math.isnan(value) else value


def decide(answers: Mapping[str, Mapping[str, Any]], thresholds: CanaryThresholds) -> CanaryVerdict:
    """Promote only when there is enough traffic, the canary served some of it, and both SLOs hold."""
    requests = scalar(answers["requests"])
    errors = scalar(answers["errors"]) or 0.0
    p99 = scalar(answers["p99"])
    canary = scalar(answers["canary_predictions"])
    error_rate = errors / requests if requests else None

    reasons: list[str] = []
    if requests is None or requests < thresholds.min_requests:
        seen = "no" if requests is None else f"{requests:.0f}"
        reasons.append(f"not enough evidence: {seen} prediction requests in the window "
                       f"(need {thresholds.min_requests}; is traffic reaching the gateway and Prometheus scraping it?)")
    if not canary:
        reasons.append("the canary's version served no predictions in the window")
    if error_rate is not None and error_rate > thresholds.max_error_rate:
        reasons.append(f"error rate {error_rate:.2%} above {thresholds.max_error_rate:.2%}")
    if p99 is None and requests:
        reasons.append("no p99 latency (the latency histogram has no samples)")
    if p99 is not None and p99 > thresholds.max_p99_s:
        reasons.append(f"p99 latency {p99 * 1000:.0f} ms above {thresholds.max_p99_s * 1000:.0f} ms")
    return CanaryVerdict(promote=not reasons, requests=requests, error_rate=error_rate, p99_s=p99,
                         canary_predictions=canary, reasons=tuple(reasons))


def breached(verdict: CanaryVerdict, thresholds: CanaryThresholds) -> bool:
    """A verdict that already proves the canary bad (enough traffic and an SLO broken): stop observing."""
    enough = verdict.requests is not None and verdict.requests >= thresholds.min_requests
    slo_broken = ((verdict.error_rate or 0.0) > thresholds.max_error_rate
                  or (verdict.p99_s or 0.0) > thresholds.max_p99_s)
    return enough and slo_broken

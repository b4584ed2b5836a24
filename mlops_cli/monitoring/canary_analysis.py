"""Should a canary be promoted or rolled back? Judged on the canary revision's own traffic.

Where the numbers come from. Every predictor pod counts its predict requests by status and times them
(`mlops_predictor_requests_total{status}`, `mlops_predictor_request_duration_seconds`:
models/predictor_metrics.py). Prometheus scrapes each pod on its own (`kubernetes_sd_configs`, role
`pod`: charts/prometheus.py) and labels its series with the pod's Knative revision
(`serving.knative.dev/revision` -> `revision`), so each series is one process's counter and the
queries sum the per-pod increases of one revision. Prometheus reads any decrease between two samples of
a series as a counter reset (prometheus/prometheus docs/querying/functions.md, `increase()` and
`resets()`): scraping a Service instead lands each scrape on a random pod, and every switch between
two pods' counters reads as a reset (idle traffic once read as 180,000 requests).

What is decided (monitoring/canary_statistics.py): the canary's errors among its own requests, against
the bad error rate it must not be promoted at, and against the baseline revision's rate plus the error
budget; never fewer canary requests than the budget requires. The canary's p99 must stay within
`max_p99_s`. Anything short of enough evidence is a rollback: no answer, a thin sample at the end of the
longest window, a canary that served nothing (fail safe: promoting on silence is how a broken version
reaches 100%).

Example::

    queries = canary_queries(window_s=600, canary="sentiment-predictor-00002", baseline="sentiment-predictor-00001")
    answers = {name: prometheus.query(q) for name, q in queries.items()}   # Prometheus JSON answers
    verdict = decide(answers, CanaryThresholds())
    verdict.promote, verdict.reasons
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from .canary_statistics import Counts, GatePolicy, binom_sf, error_reasons, max_errors, required_sample

REQUESTS = "mlops_predictor_requests_total"
LATENCY = "mlops_predictor_request_duration_seconds_bucket"


@dataclass(frozen=True)
class CanaryThresholds:
    max_error_rate: float = 0.01    # the error budget: a canary at or below it is healthy
    bad_error_rate: float = 0.05    # a canary failing this often must not be promoted
    false_promotion: float = 0.05   # how often a bad canary may still be promoted (the test's level)
    false_rollback: float = 0.05    # how often a healthy canary may still be rolled back
    max_p99_s: float = 1.0          # the canary's p99 latency, seconds
    min_requests: int = 0           # a floor on the canary's requests, above what the budget requires

    @property
    def gate(self) -> GatePolicy:
        return GatePolicy(self.max_error_rate, self.bad_error_rate, self.false_promotion, self.false_rollback)

    @property
    def required(self) -> int:
        return max(required_sample(self.gate)[0], self.min_requests)


@dataclass(frozen=True)
class CanaryVerdict:
    promote: bool
    canary: Counts
    baseline: Counts
    p99_s: float | None
    required: int
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def decision(self) -> str:
        return "promote" if self.promote else "rollback"

    @property
    def enough(self) -> bool:
        return self.canary.requests >= self.required

    @property
    def error_rate(self) -> float | None:
        return self.canary.rate

    def as_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "canary_requests": self.canary.requests, "canary_errors": self.canary.errors,
                "error_rate": self.canary.rate, "baseline_requests": self.baseline.requests,
                "baseline_errors": self.baseline.errors, "baseline_error_rate": self.baseline.rate,
                "required_requests": self.required, "p99_s": self.p99_s, "reasons": list(self.reasons)}


class PrometheusAnswerError(ValueError):
    """An answer that is not a successful Prometheus instant-query result."""


def _label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"')


def canary_queries(window_s: int, canary: str, baseline: str) -> dict[str, str]:
    """PromQL instant queries over the last `window_s` seconds (names are what `decide` expects)."""
    w = f"{int(window_s)}s"
    out: dict[str, str] = {}
    for role, revision in (("canary", canary), ("baseline", baseline)):
        rev = f'revision="{_label(revision)}"'
        out[f"{role}_requests"] = f"sum(increase({REQUESTS}{{{rev}}}[{w}]))"
        out[f"{role}_errors"] = f'sum(increase({REQUESTS}{{{rev},status=~"5.."}}[{w}]))'
    out["canary_p99"] = (f'histogram_quantile(0.99, sum by (le) (rate({LATENCY}{{revision="{_label(canary)}"}}[{w}])))')
    return out


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


def _counts(answers: Mapping[str, Mapping[str, Any]], role: str) -> Counts:
    # increase() extrapolates to the window's edges, so counts come back fractional: round to whole requests
    requests = round(scalar(answers[f"{role}_requests"]) or 0.0)
    errors = min(round(scalar(answers[f"{role}_errors"]) or 0.0), requests)
    return Counts(requests, errors)


def decide(answers: Mapping[str, Mapping[str, Any]], thresholds: CanaryThresholds) -> CanaryVerdict:
    """Promote only on enough canary traffic, an error count that rules out a bad canary, and the p99 within bounds."""
    canary, baseline = _counts(answers, "canary"), _counts(answers, "baseline")
    p99 = scalar(answers["canary_p99"])
    reasons = error_reasons(canary, baseline, thresholds.gate)
    required = thresholds.required
    if canary.requests < required:
        reasons.insert(0, f"not enough evidence: the canary answered {canary.requests} requests, "
                          f"{required} are needed (is traffic reaching it, and Prometheus scraping its pods?)")
    if p99 is not None and p99 > thresholds.max_p99_s:
        reasons.append(f"canary p99 latency {p99 * 1000:.0f} ms above {thresholds.max_p99_s * 1000:.0f} ms")
    return CanaryVerdict(promote=not reasons, canary=canary, baseline=baseline, p99_s=p99, required=required,
                         reasons=tuple(reasons))


def breached(verdict: CanaryVerdict, thresholds: CanaryThresholds) -> bool:
    """Evidence strong enough to stop watching before the window ends: the canary is already provably bad.

    Looked at every poll, so the bar is higher than the final test's (a healthy canary watched 40 times
    must not trip it by chance): more errors than a bad-rate canary may show, and a count a canary at the
    budget shows with probability under false_rollback / 100; or a p99 breach on a full sample.
    """
    n, e = verdict.canary.requests, verdict.canary.errors
    g = thresholds.gate
    errors_bad = n > 0 and e > max_errors(n, g.bad_error_rate, g.false_promotion) \
        and binom_sf(e, n, g.max_error_rate) <= g.false_rollback / 100
    slow = verdict.enough and verdict.p99_s is not None and verdict.p99_s > thresholds.max_p99_s
    return errors_bad or slow

"""Watch a canary for an observation window and return the verdict (core/canary_analysis.py decides).

Polls every `interval_s` over the time observed so far and stops early once the evidence already proves
the canary bad (enough requests and an SLO broken): a bad canary should not keep its traffic for the
whole window. A healthy verdict is only given at the end of the window, over the whole window.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

from .canary_analysis import CanaryThresholds, CanaryVerdict, PrometheusAnswerError, breached, canary_queries, decide
from .errors import MlopsError
from .progress import SILENT, Reporter

Query = Callable[[str], Mapping[str, Any]]


def observe_canary(
    query: Query, *, canary_version: str, window_s: float, interval_s: float, thresholds: CanaryThresholds,
    reporter: Reporter = SILENT, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
) -> CanaryVerdict:
    start = clock()
    reporter.start("canary", f"observing version {canary_version} for {window_s:.0f} s", total=None)
    while True:
        elapsed = clock() - start
        done = elapsed >= window_s
        span = max(interval_s, min(elapsed, window_s))
        verdict = _verdict(query, canary_version, span, thresholds)
        if done or breached(verdict, thresholds):
            reporter.finish("canary", verdict.decision)
            return verdict
        reporter.update("canary", info=_progress(verdict))
        sleep(min(interval_s, window_s - elapsed))


def _verdict(query: Query, canary_version: str, span_s: float, thresholds: CanaryThresholds) -> CanaryVerdict:
    answers = {name: query(promql) for name, promql in canary_queries(int(round(span_s)), canary_version).items()}
    try:
        return decide(answers, thresholds)
    except PrometheusAnswerError as exc:
        raise MlopsError(f"canary analysis: {exc}", hint="check [canary].prometheus_url and that Prometheus scrapes the gateway") from None


def _progress(verdict: CanaryVerdict) -> str:
    parts = [f"{verdict.requests or 0:.0f} requests"]
    if verdict.error_rate is not None:
        parts.append(f"errors {verdict.error_rate:.2%}")
    if verdict.p99_s is not None:
        parts.append(f"p99 {verdict.p99_s * 1000:.0f} ms")
    return ", ".join(parts)

"""Watch a canary for an observation window and return the verdict (monitoring/canary_analysis.py decides).

Polls every `interval_s` over the time observed so far and stops early once the evidence already proves
the canary bad (enough requests and an SLO broken): a bad canary should not keep its traffic for the
whole window. A healthy verdict is only given at the end of the window, over the whole window.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..common.errors import MlopsError
from ..common.progress import SILENT, Reporter
from ..config.settings import Config
from .canary_analysis import CanaryThresholds, CanaryVerdict, PrometheusAnswerError, breached, canary_queries, decide

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


@dataclass
class CanaryJudgement:
    verdict: CanaryVerdict
    action: str            # "promoted", "rolled back" or "none"
    outcome: Any = None    # the target's Outcome of the promote/rollback, if one ran

    def as_dict(self) -> dict[str, Any]:
        data = {**self.verdict.as_dict(), "action": self.action}
        if self.outcome is not None:
            data["outcome"] = self.outcome.as_dict()
        return data


def prometheus_url(config: Config) -> str:
    """[canary].prometheus_url, else the local platform's Prometheus (`mlops up --with-prometheus`)."""
    return config.canary.prometheus_url or f"http://{config.local.host}:{config.local.prometheus_port}"


def judge_canary(
    config: Config, *, canary_version: str, window: str, promote: Callable[[], Any] | None = None,
    rollback: Callable[[], Any] | None = None, query: Query | None = None, reporter: Reporter = SILENT,
    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
) -> CanaryJudgement:
    """Observe the canary for `window` ("10m"), then promote it (healthy) or roll it back (anything else).

    `promote` / `rollback` are the target's own operations; without them the verdict is only reported.
    A rolled-back canary is an MlopsError (exit 1) naming the reasons, raised after the rollback.
    """
    from ..adapters.prometheus_api import PrometheusApi
    from ..common.time_window import parse_duration

    window_s = parse_duration(window, "--observe").total_seconds()
    c = config.canary
    thresholds = CanaryThresholds(max_error_rate=c.max_error_rate, max_p99_s=c.max_p99_s, min_requests=c.min_requests)
    query = query or PrometheusApi(prometheus_url(config)).query
    try:
        verdict = observe_canary(query, canary_version=canary_version, window_s=window_s, interval_s=c.interval_s,
                                 thresholds=thresholds, reporter=reporter, clock=clock, sleep=sleep)
    except MlopsError as exc:
        if rollback is None:
            raise
        rollback()  # a canary nobody could watch is not promoted, nor left serving
        exc.message = f"{exc.message}\n  the canary of version {canary_version} was rolled back"
        raise
    if verdict.promote:
        if promote is None:
            return CanaryJudgement(verdict, "none")
        return CanaryJudgement(verdict, "promoted", promote())
    why = "; ".join(verdict.reasons)
    if rollback is None:
        raise MlopsError(f"canary of version {canary_version} is not healthy: {why}",
                         hint="roll it back with: mlops deploy --rollback (or promote anyway with --promote)")
    rollback()
    raise MlopsError(f"canary of version {canary_version} rolled back: {why}",
                     hint="see the gateway's metrics (charts/observability dashboards) for what went wrong")

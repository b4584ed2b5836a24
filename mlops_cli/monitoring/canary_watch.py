"""Watch a canary until the evidence decides, and return the verdict (monitoring/canary_analysis.py decides).

Polls every `interval_s` over the time observed so far. The verdict is given once the window is over
*and* the canary revision has answered the requests the error budget requires
(canary_statistics.required_sample); until then the watch goes on, up to `max_window_s` (then: not
enough evidence, a rollback), and with a `probe` it sends synthetic predictions at `probe_rps` so thin
real traffic still reaches the sample. It stops early only when the evidence already proves the canary
bad (canary_analysis.breached): a bad canary should not keep its traffic for the whole window.
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
# charts/observability/prometheus.yml's global scrape_interval, the cluster's and `up --with-prometheus`'s
# (tests/test_canary_analysis.py checks they agree).
SCRAPE_INTERVAL_S = 15.0
# increase() drops a series with fewer than two samples in its range (prometheus promql/functions.go
# extrapolatedRate: "No sense in trying to compute a rate without at least two points"), and a range of about
# one scrape interval holds one or two by phase: a 20 s watch read a serving revision as 0 requests. Four
# intervals leave room for a late or failed scrape; a longer range only adds the baseline's earlier requests.
MIN_RANGE_S = 4 * SCRAPE_INTERVAL_S
PROBE_TEXT = "canary probe: a short, ordinary review of a film that was fine"  # synthetic traffic ([canary].probe_rps)


@dataclass(frozen=True)
class Revisions:
    """The Knative revisions of a running canary, as the target reported them once the split was live."""
    canary: str
    baseline: str


@dataclass(frozen=True)
class WatchPlan:
    window_s: float        # the shortest observation (--observe)
    max_window_s: float    # the longest, while the canary's sample is still short
    interval_s: float      # between looks
    probe_rps: float = 0.0


def observe_canary(
    query: Query, revisions: Revisions, plan: WatchPlan, thresholds: CanaryThresholds, *,
    probe: Callable[[], Any] | None = None, reporter: Reporter = SILENT,
    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
) -> CanaryVerdict:
    start = clock()
    reporter.start("canary", f"observing revision {revisions.canary} (needs {thresholds.required} of its requests)",
                   total=None)
    while True:
        elapsed = clock() - start
        verdict = _verdict(query, revisions, max(plan.interval_s, elapsed, MIN_RANGE_S), thresholds)
        over = elapsed >= plan.window_s and (verdict.enough or elapsed >= plan.max_window_s)
        if over or breached(verdict, thresholds):
            reporter.finish("canary", verdict.decision)
            return verdict
        reporter.update("canary", info=_progress(verdict))
        ahead = [b - elapsed for b in (plan.window_s, plan.max_window_s) if b > elapsed]
        pause = min([plan.interval_s, *ahead])
        if probe is not None and plan.probe_rps > 0 and not verdict.enough:
            _probe_for(probe, pause, plan.probe_rps, clock, sleep)
        else:
            sleep(pause)


def _probe_for(probe: Callable[[], Any], seconds: float, rps: float, clock: Callable[[], float],
               sleep: Callable[[float], None]) -> None:
    """Synthetic predictions at about `rps` for `seconds` (each waits for its answer: at most that rate)."""
    end = clock() + seconds
    while clock() < end:
        began = clock()
        try:
            probe()
        except MlopsError:
            pass  # an answer with an error counts in the predictor's metrics; one that never got there: ProbeTally
        sleep(max(0.0, min(1.0 / rps - (clock() - began), end - clock())))


@dataclass
class ProbeTally:
    """Wraps the probe to count what failed before any predictor saw it (no route, no credentials, a Secret the
    caller may not read): such probes add nothing to the judge's sample, so a canary watched on them alone is
    rolled back for "not enough evidence", and the reason must say why there was none."""
    probe: Callable[[], Any]
    reporter: Reporter = SILENT
    sent: int = 0
    failed: int = 0
    last_error: str = ""

    def __call__(self) -> Any:
        self.sent += 1
        try:
            return self.probe()
        except MlopsError as exc:
            self.failed += 1
            if not self.last_error:
                self.reporter.warn(f"canary probe failed: {exc.message}")
            self.last_error = exc.message
            raise

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "failed": self.failed, "last_error": self.last_error}

    def why(self) -> str:
        return f"; {self.failed} of {self.sent} probes failed ({self.last_error})" if self.failed else ""


def _verdict(query: Query, revisions: Revisions, span_s: float, thresholds: CanaryThresholds) -> CanaryVerdict:
    promql = canary_queries(int(round(span_s)), revisions.canary, revisions.baseline)
    answers = {name: query(q) for name, q in promql.items()}
    try:
        return decide(answers, thresholds)
    except PrometheusAnswerError as exc:
        raise MlopsError(f"canary analysis: {exc}",
                         hint="check [canary].prometheus_url and that Prometheus scrapes the predictor pods") from None


def _progress(verdict: CanaryVerdict) -> str:
    c = verdict.canary
    parts = [f"canary {c.requests}/{verdict.required} requests"]
    if c.rate is not None:
        parts.append(f"errors {c.rate:.2%}")
    if verdict.baseline.rate is not None:
        parts.append(f"baseline {verdict.baseline.rate:.2%}")
    if verdict.p99_s is not None:
        parts.append(f"p99 {verdict.p99_s * 1000:.0f} ms")
    return ", ".join(parts)


@dataclass
class CanaryJudgement:
    verdict: CanaryVerdict
    action: str            # "promoted", "rolled back" or "none"
    outcome: Any = None    # the target's Outcome of the promote/rollback, if one ran
    probes: ProbeTally | None = None

    def as_dict(self) -> dict[str, Any]:
        data = {**self.verdict.as_dict(), "action": self.action}
        if self.outcome is not None:
            data["outcome"] = self.outcome.as_dict()
        if self.probes is not None and self.probes.sent:
            data["probes"] = self.probes.as_dict()
        return data


def prometheus_url(config: Config) -> str:
    """[canary].prometheus_url, else the local platform's Prometheus (`mlops up --with-prometheus`)."""
    return config.canary.prometheus_url or f"http://{config.local.host}:{config.local.prometheus_port}"


def thresholds_from(config: Config) -> CanaryThresholds:
    c = config.canary
    return CanaryThresholds(max_error_rate=c.max_error_rate, bad_error_rate=c.bad_error_rate,
                            false_promotion=c.false_promotion, false_rollback=c.false_rollback,
                            max_p99_s=c.max_p99_s, min_requests=c.min_requests)


def judge_canary(
    config: Config, *, canary_version: str, revisions: Revisions, window: str,
    promote: Callable[[], Any] | None = None, rollback: Callable[[], Any] | None = None,
    probe: Callable[[], Any] | None = None, query: Query | None = None, reporter: Reporter = SILENT,
    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
) -> CanaryJudgement:
    """Observe the canary for `window` ("10m") and until its sample is big enough, then promote it (healthy)
    or roll it back (anything else).

    `promote` / `rollback` are the target's own operations; without them the verdict is only reported.
    `probe` sends one synthetic prediction (used at [canary].probe_rps while the canary's sample is short).
    A rolled-back canary is an MlopsError (exit 1) naming the reasons, raised after the rollback.
    """
    from ..adapters.prometheus_api import PrometheusApi
    from ..common.time_window import parse_duration

    c = config.canary
    window_s = parse_duration(window, "--observe").total_seconds()
    plan = WatchPlan(window_s=window_s, max_window_s=max(window_s, c.max_window_s), interval_s=c.interval_s,
                     probe_rps=c.probe_rps)
    query = query or PrometheusApi(prometheus_url(config)).query
    tally = ProbeTally(probe, reporter) if probe is not None else None
    try:
        if not (revisions.canary and revisions.baseline) or revisions.canary == revisions.baseline:
            raise MlopsError(f"no canary split to judge: canary revision {revisions.canary or '?'}, "
                             f"baseline revision {revisions.baseline or '?'}",
                             hint="a canary needs a version already serving: deploy one first, then --canary N")
        verdict = observe_canary(query, revisions, plan, thresholds_from(config), probe=tally, reporter=reporter,
                                 clock=clock, sleep=sleep)
    except MlopsError as exc:
        if rollback is None:
            raise
        rollback()  # a canary nobody could watch is not promoted, nor left serving
        exc.message = f"{exc.message}\n  the canary of version {canary_version} was rolled back"
        raise
    if verdict.promote:
        if promote is None:
            return CanaryJudgement(verdict, "none", probes=tally)
        return CanaryJudgement(verdict, "promoted", promote(), probes=tally)
    why = "; ".join(verdict.reasons) + (tally.why() if tally else "")
    if rollback is None:
        raise MlopsError(f"canary of version {canary_version} is not healthy: {why}",
                         hint="roll it back with: mlops deploy --rollback (or promote anyway with --promote)")
    rollback()
    raise MlopsError(f"canary of version {canary_version} rolled back: {why}",
                     hint="see the predictor's metrics by revision (charts/observability dashboards) for what went wrong")

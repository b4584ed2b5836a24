"""How often does the canary gate promote a bad canary, or roll back a healthy one? Measured by simulation.

Each run plays traffic into per-revision counters (requests split between baseline and canary by the
canary's share, each failing with its revision's error rate, Poisson arrivals), and drives the gate's own
watch loop (monitoring/canary_watch.observe_canary, hence canary_analysis.decide and canary_statistics)
through a stand-in Prometheus that answers the gate's queries from those counters, on a simulated clock.
What is simulated is the traffic and Prometheus; every decision is the shipped code's.

    .venv/bin/python benchmarks/canary_gate.py                 # the README's table (2,000 seeds a row)
    .venv/bin/python benchmarks/canary_gate.py --runs 200      # quicker

Exit 1 when a bar fails: a canary failing >= 5% next to a baseline failing <= 1% promoted in more than 5% of
runs, or a healthy canary (at or under the 1% budget) rolled back in more than 5%.
"""

from __future__ import annotations

import argparse
import bisect
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe  # noqa: E402
from mlops_cli.monitoring.canary_analysis import CanaryThresholds  # noqa: E402
from mlops_cli.monitoring.canary_watch import Revisions, WatchPlan, observe_canary  # noqa: E402

CANARY, BASELINE = "sentiment-predictor-00002", "sentiment-predictor-00001"
BAR = 0.05


@dataclass(frozen=True)
class Scenario:
    canary_rate: float
    baseline_rate: float
    kind: str   # "bad": must be rolled back; "healthy": must be promoted; "info": no bar


SCENARIOS = [
    Scenario(0.05, 0.01, "bad"), Scenario(0.05, 0.0, "bad"), Scenario(0.10, 0.01, "bad"), Scenario(0.25, 0.0, "bad"),
    Scenario(0.01, 0.01, "healthy"), Scenario(0.01, 0.0, "healthy"), Scenario(0.005, 0.005, "healthy"),
    Scenario(0.0, 0.0, "healthy"), Scenario(0.03, 0.0, "info"), Scenario(0.03, 0.03, "info"),
]


class SimulatedPrometheus:
    """Per-revision request and error counters over simulated time; answers the gate's instant queries.

    Counts are exact per revision, which is what per-pod scraping summed across instances gives (each
    series is one process's counter, so no false resets); increase()'s extrapolation is left out.
    Traffic between two looks is drawn when a query asks (one draw per look, not per request).
    """

    QUERY = re.compile(r'^sum\(increase\(mlops_predictor_requests_total\{revision="([^"]+)"(,status=~"5\.\.")?\}\[(\d+)s\]\)\)$')

    def __init__(self, scenario: Scenario, share: float, rps: float, rng: np.random.Generator) -> None:
        self.scenario, self.share, self.rps, self.rng = scenario, share, rps, rng
        self.now = 0.0        # the simulated clock
        self.probes = 0       # synthetic requests sent since the last draw
        self.times = [0.0]
        self.counts = [(0, 0, 0, 0)]  # cumulative (canary n, canary errors, baseline n, baseline errors)

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def probe(self) -> None:
        self.probes += 1

    def _draw(self) -> None:
        if self.now <= self.times[-1]:
            return
        total = int(self.rng.poisson(self.rps * (self.now - self.times[-1]))) + self.probes
        canary = int(self.rng.binomial(total, self.share))
        errors_c = int(self.rng.binomial(canary, self.scenario.canary_rate))
        errors_b = int(self.rng.binomial(total - canary, self.scenario.baseline_rate))
        nc, ec, nb, eb = self.counts[-1]
        self.times.append(self.now)
        self.counts.append((nc + canary, ec + errors_c, nb + total - canary, eb + errors_b))
        self.probes = 0

    def _at(self, t: float) -> tuple[int, int, int, int]:
        return self.counts[max(bisect.bisect_right(self.times, t) - 1, 0)]

    def query(self, promql: str) -> dict:
        self._draw()
        if promql.startswith("histogram_quantile"):
            value = "0.12"  # latency is not what this benchmark measures
        else:
            m = self.QUERY.match(promql)
            assert m, f"the gate asked something this stand-in does not answer: {promql}"
            revision, errors, window = m.group(1), bool(m.group(2)), int(m.group(3))
            col = (0 if revision == CANARY else 2) + (1 if errors else 0)
            value = str(self._at(self.now)[col] - self._at(self.now - window)[col])
        return {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [self.now, value]}]}}


def run_once(scenario: Scenario, seed: int, plan: WatchPlan, thresholds: CanaryThresholds, share: float,
             rps: float) -> tuple[bool, int, float]:
    prom = SimulatedPrometheus(scenario, share, rps, np.random.default_rng(seed))
    verdict = observe_canary(prom.query, Revisions(CANARY, BASELINE), plan, thresholds, probe=prom.probe,
                             clock=lambda: prom.now, sleep=prom.sleep)
    return verdict.promote, verdict.canary.requests, prom.now


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="seeds per scenario")
    parser.add_argument("--share", type=float, default=0.10, help="the canary's traffic share (--canary 10)")
    parser.add_argument("--rps", type=float, default=1.0, help="real prediction requests per second, both revisions")
    parser.add_argument("--probe-rps", type=float, default=1.0, help="[canary].probe_rps")
    parser.add_argument("--window", type=float, default=600.0, help="--observe, seconds")
    parser.add_argument("--max-window", type=float, default=3600.0, help="[canary].max_window_s")
    args = parser.parse_args(argv)

    thresholds = CanaryThresholds()
    plan = WatchPlan(window_s=args.window, max_window_s=args.max_window, interval_s=30.0, probe_rps=args.probe_rps)
    print(f"machine: {describe()} (a simulation: the rates do not depend on it)")
    print(f"gate: budget {thresholds.max_error_rate:.0%}, bad rate {thresholds.bad_error_rate:.0%}, "
          f"false promotion <= {thresholds.false_promotion:.0%}, false rollback <= {thresholds.false_rollback:.0%}; "
          f"required canary sample {thresholds.required} requests")
    print(f"traffic: {args.rps:g} req/s real + probes {args.probe_rps:g}/s while short, canary share {args.share:.0%}, "
          f"window {args.window:.0f} s (up to {args.max_window:.0f} s), {args.runs} seeds per row\n")
    print("| canary fails | baseline fails | must be | promoted | rolled back | canary requests at decision (median) "
          "| minutes to decide (median) | holds |")
    print("|---|---|---|---|---|---|---|---|")
    failed = False
    for s in SCENARIOS:
        results = [run_once(s, seed, plan, thresholds, args.share, args.rps) for seed in range(args.runs)]
        promoted = sum(p for p, _, _ in results) / len(results)
        n = float(np.median([r for _, r, _ in results]))
        minutes = float(np.median([t for _, _, t in results])) / 60
        if s.kind == "bad":
            holds = promoted <= BAR
            must = "rolled back"
        elif s.kind == "healthy":
            holds = 1 - promoted <= BAR
            must = "promoted"
        else:
            holds, must = None, "(no bar)"
        failed |= holds is False
        mark = "-" if holds is None else ("yes" if holds else "**no**")
        print(f"| {s.canary_rate:.1%} | {s.baseline_rate:.1%} | {must} | {promoted:.1%} | {1 - promoted:.1%} "
              f"| {n:.0f} | {minutes:.1f} | {mark} |")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

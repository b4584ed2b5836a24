"""Is the canary's own error rate good enough to promote? Exact binomial tests on request counts.

The canary is judged on its own traffic (requests its revision answered), never diluted by the
baseline's. Two tests, both of which must pass, and a sample size that makes them decisive:

1. **Not bad** (guards false promotion). A canary whose true error rate is `bad_error_rate` or worse
   must be promoted in at most `false_promotion` of rollouts. Promote only if so few errors were seen
   that a canary that bad would show that few with probability <= `false_promotion`:
   P(Binomial(n, bad_error_rate) <= errors) <= false_promotion. This holds whatever the sample size
   and whatever the baseline does.
2. **No worse than the baseline** (catches a canary worse than what users get now, even below the bad
   rate). Roll back if the canary's errors are improbable (p <= `false_rollback` / 2) for a rate of
   the baseline's upper confidence bound plus the error budget (`max_error_rate`).

**Required sample** (`required_sample`): the smallest n at which a canary exactly at the error budget
(`max_error_rate`) passes test 1 with probability >= 1 - false_rollback / 2. Below it the verdict is
"not enough evidence yet": the watch extends the window (and probes), and never promotes on less.
The false-rollback budget is split between the two tests, so a healthy canary is rolled back in at
most `false_rollback` of rollouts. benchmarks/canary_gate.py measures both rates by simulation through
the same code (the README's table).

Example::

    policy = GatePolicy(max_error_rate=0.01, bad_error_rate=0.05, false_promotion=0.05, false_rollback=0.05)
    required_sample(policy)                              # (208, 5): 208 canary requests, at most 5 errors
    error_reasons(Counts(250, 2), Counts(2250, 20), policy)   # [] : both tests pass
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class GatePolicy:
    max_error_rate: float = 0.01     # the error budget: a canary at or below it is healthy
    bad_error_rate: float = 0.05     # a canary at or above it must not be promoted
    false_promotion: float = 0.05    # most often a bad canary may be promoted
    false_rollback: float = 0.05     # most often a healthy canary may be rolled back

    def __post_init__(self) -> None:
        if not 0 < self.max_error_rate < self.bad_error_rate < 1:
            raise ValueError(f"need 0 < max_error_rate ({self.max_error_rate}) < bad_error_rate ({self.bad_error_rate}) < 1")
        for name in ("false_promotion", "false_rollback"):
            if not 0 < getattr(self, name) < 0.5:
                raise ValueError(f"{name} must be between 0 and 0.5, got {getattr(self, name)}")


@dataclass(frozen=True)
class Counts:
    requests: int
    errors: int

    @property
    def rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


def _log_pmf(k: int, n: int, p: float) -> float:
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
            + k * math.log(p) + (n - k) * math.log1p(-p))


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(Binomial(n, p) <= k), exact (summed in the tail that is smaller, to keep its precision)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    if k <= n * p:
        return min(1.0, math.fsum(math.exp(_log_pmf(i, n, p)) for i in range(k + 1)))
    return max(0.0, 1.0 - math.fsum(math.exp(_log_pmf(i, n, p)) for i in range(k + 1, n + 1)))


def binom_sf(k: int, n: int, p: float) -> float:
    """P(Binomial(n, p) >= k)."""
    return 1.0 - binom_cdf(k - 1, n, p) if k > 0 else 1.0


@lru_cache(maxsize=4096)
def max_errors(n: int, bad_error_rate: float, false_promotion: float) -> int:
    """Most errors among n that still rules out a `bad_error_rate` canary at level `false_promotion` (-1: none)."""
    k = -1
    while k + 1 <= n and binom_cdf(k + 1, n, bad_error_rate) <= false_promotion:
        k += 1
    return k


@lru_cache(maxsize=64)
def required_sample(policy: GatePolicy) -> tuple[int, int]:
    """(n, k): the fewest canary requests at which a canary at the budget passes test 1 often enough."""
    beta = policy.false_rollback / 2
    n = 1
    while True:
        k = max_errors(n, policy.bad_error_rate, policy.false_promotion)
        if k >= 0 and binom_sf(k + 1, n, policy.max_error_rate) <= beta:
            return n, k
        n += 1


@lru_cache(maxsize=4096)
def upper_bound(errors: int, requests: int, confidence: float) -> float:
    """Clopper-Pearson upper confidence bound of an error rate (1.0 with no requests)."""
    if requests <= 0:
        return 1.0
    if errors >= requests:
        return 1.0
    lo, hi = errors / requests, 1.0
    for _ in range(50):  # bisection: P(Binomial(n, p) <= errors) falls as p grows
        mid = (lo + hi) / 2
        if binom_cdf(errors, requests, mid) > 1 - confidence:
            lo = mid
        else:
            hi = mid
    return hi


def error_reasons(canary: Counts, baseline: Counts, policy: GatePolicy) -> list[str]:
    """Why the canary's errors forbid promotion (tests 1 and 2); empty when both pass."""
    n, e = canary.requests, canary.errors
    if n <= 0:
        return []
    reasons = []
    k = max_errors(n, policy.bad_error_rate, policy.false_promotion)
    if e > k:
        allowed = f"at most {k}" if k >= 0 else "none"
        reasons.append(f"canary errors {e} of {n} ({e / n:.2%}): {allowed} would rule out an error rate of "
                       f"{policy.bad_error_rate:.0%} (false promotion <= {policy.false_promotion:.0%})")
    if worse_than_baseline(canary, baseline, policy):
        reasons.append(f"canary errors {e / n:.2%} significantly above the baseline's {(baseline.rate or 0):.2%} "
                       f"plus the {policy.max_error_rate:.0%} error budget")
    return reasons


def _reference_rate(baseline: Counts, policy: GatePolicy) -> float:
    beta = policy.false_rollback / 2
    return min(1.0, upper_bound(baseline.errors, baseline.requests, 1 - beta) + policy.max_error_rate)


def worse_than_baseline(canary: Counts, baseline: Counts, policy: GatePolicy) -> bool:
    """Test 2: the canary's errors are improbable for the baseline's rate (upper bound) plus the budget."""
    if canary.requests <= 0:
        return False
    return binom_sf(canary.errors, canary.requests, _reference_rate(baseline, policy)) <= policy.false_rollback / 2

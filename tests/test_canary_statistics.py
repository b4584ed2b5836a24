"""The canary gate's statistics (monitoring/canary_statistics.py): exact binomial tails, the sample size the
error budget requires, and the two tests. benchmarks/canary_gate.py measures the whole gate's rates."""

from __future__ import annotations

import math

import pytest

from mlops_cli.monitoring.canary_statistics import (Counts, GatePolicy, binom_cdf, binom_sf, error_reasons, max_errors,
                                                    required_sample, upper_bound)

POLICY = GatePolicy()


def _cdf_by_definition(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


@pytest.mark.parametrize("n, p", [(10, 0.3), (208, 0.01), (208, 0.05), (500, 0.5), (1000, 0.002)])
def test_binomial_tails_are_exact(n, p):
    for k in (0, 1, 5, int(n * p), int(n * p) + 3, n - 1):
        assert binom_cdf(k, n, p) == pytest.approx(_cdf_by_definition(k, n, p), rel=1e-9, abs=1e-15)
        assert binom_sf(k + 1, n, p) == pytest.approx(1 - _cdf_by_definition(k, n, p), rel=1e-6, abs=1e-12)
    assert binom_cdf(-1, n, p) == 0.0 and binom_cdf(n, n, p) == 1.0


def test_the_required_sample_is_the_smallest_that_meets_both_error_rates():
    n, k = required_sample(POLICY)
    assert (n, k) == (208, 5)
    # test 1 at n: a 5% canary shows <= k errors in at most 5% of runs; a 1% canary shows more in at most 2.5%
    assert binom_cdf(k, n, 0.05) <= 0.05 < binom_cdf(k + 1, n, 0.05)
    assert binom_sf(k + 1, n, 0.01) <= 0.025
    smaller = n - 1
    assert binom_sf(max_errors(smaller, 0.05, 0.05) + 1, smaller, 0.01) > 0.025


def test_the_sample_grows_as_the_rates_close_in():
    assert required_sample(GatePolicy(max_error_rate=0.01, bad_error_rate=0.03))[0] > 208
    assert required_sample(GatePolicy(max_error_rate=0.01, bad_error_rate=0.10))[0] < 208
    assert required_sample(GatePolicy(false_promotion=0.01, false_rollback=0.01))[0] > 208


def test_upper_bound_is_clopper_pearson():
    ub = upper_bound(20, 2000, 0.975)
    assert binom_cdf(20, 2000, ub) == pytest.approx(0.025, rel=1e-6)
    assert upper_bound(0, 0, 0.975) == 1.0 and upper_bound(5, 5, 0.975) == 1.0


def test_error_reasons():
    assert error_reasons(Counts(250, 2), Counts(2250, 20), POLICY) == []
    bad = error_reasons(Counts(250, 20), Counts(2250, 20), POLICY)
    assert bad[0].startswith("canary errors 20 of 250 (8.00%): at most 6 would rule out an error rate of 5%")
    assert any("above the baseline" in r for r in bad)
    assert error_reasons(Counts(0, 0), Counts(100, 0), POLICY) == []


@pytest.mark.parametrize("kwargs", [dict(max_error_rate=0.05, bad_error_rate=0.05), dict(false_promotion=0.6),
                                    dict(max_error_rate=0.0)])
def test_a_policy_that_cannot_tell_good_from_bad_is_refused(kwargs):
    with pytest.raises(ValueError):
        GatePolicy(**kwargs)


def test_the_benchmark_drives_the_gates_own_watch(monkeypatch):
    import benchmarks.canary_gate as bench
    import mlops_cli.monitoring.canary_watch as watch

    calls = []
    monkeypatch.setattr(bench, "observe_canary", lambda *a, **k: calls.append(a) or watch.observe_canary(*a, **k))
    plan = watch.WatchPlan(window_s=600, max_window_s=3600, interval_s=30, probe_rps=1)
    promoted, n, _ = bench.run_once(bench.Scenario(0.0, 0.0, "healthy"), 1, plan, bench.CanaryThresholds(), 0.1, 1.0)
    assert calls and promoted and n >= 208
    promoted, _, _ = bench.run_once(bench.Scenario(0.25, 0.0, "bad"), 1, plan, bench.CanaryThresholds(), 0.1, 1.0)
    assert not promoted

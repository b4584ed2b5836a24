"""The retrain gate: the challenger must beat the champion on fresh labelled data and not lose the old.

1. **fresh slice**: the paired bootstrap interval (training/intervals.py, the registry's 95% and seed) of
   challenger minus champion in [loop].gate_metric, on the held-out slice of feedback, lies above zero;
2. **original test split**: the challenger loses at most [loop].max_test_drop of that metric there.
Both numbers, the baseline's on both sets, and each reason are kept for the loop's record.

Example::

    verdict = judge(y_fresh, challenger_fresh, champion_fresh, y_test, challenger_test, champion_test,
                    metric="macro_f1", max_test_drop=0.02, n_classes=2)
    verdict["passed"], verdict["reasons"]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..training.intervals import estimate, paired_difference


def judge(y_fresh: np.ndarray, challenger_fresh: np.ndarray, champion_fresh: np.ndarray, y_test: np.ndarray,
          challenger_test: np.ndarray, champion_test: np.ndarray, *, metric: str, max_test_drop: float,
          n_classes: int) -> dict[str, Any]:
    fresh = paired_difference(y_fresh, challenger_fresh, champion_fresh, metric, n_classes)
    test = {"challenger": estimate(y_test, challenger_test, metric, n_classes),
            "champion": estimate(y_test, champion_test, metric, n_classes)}
    test["difference"] = test["challenger"] - test["champion"]
    reasons = []
    if not fresh["low"] > 0:
        reasons.append(f"on the fresh slice ({len(y_fresh)} labels) the challenger's {metric} is "
                       f"{fresh['estimate']:+.3f} against the champion's, 95% interval "
                       f"[{fresh['low']:+.3f}, {fresh['high']:+.3f}]: not above zero")
    if test["difference"] < -max_test_drop:
        reasons.append(f"on the original test split ({len(y_test)} rows) the challenger's {metric} drops by "
                       f"{-test['difference']:.3f}, more than [loop].max_test_drop ({max_test_drop})")
    return {"passed": not reasons, "metric": metric, "reasons": reasons,
            "fresh": {"n": int(len(y_fresh)), **{k: round(v, 4) for k, v in fresh.items()}},
            "test": {"n": int(len(y_test)), "max_drop": max_test_drop, **{k: round(v, 4) for k, v in test.items()}}}

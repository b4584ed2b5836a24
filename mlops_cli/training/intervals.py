"""Bootstrap intervals: how much a test-set number would move with another sample of the same size.

Percentile bootstrap over test rows (seeded, so the same predictions give the same interval). The paired
version resamples the same rows for both models, so what is shared (an easy or a hard sample) cancels
and the interval is of the difference itself.

Example::

    low, high = interval(y, pred, "macro_f1")                     # 95% by default
    diff = paired_difference(y, pred_model, pred_baseline, "accuracy")
    diff["estimate"], diff["low"], diff["high"]
"""

from __future__ import annotations

from typing import Callable

import numpy as np

RESAMPLES = 1000
LEVEL = 0.95
SEED = 0


def _accuracy(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    return (pred == y).mean(axis=-1)


def _macro_f1(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Macro F1 along the last axis; a class with no true and no predicted rows scores 0 (sklearn's zero_division=0)."""
    scores = []
    for c in range(n_classes):
        tp = ((pred == c) & (y == c)).sum(axis=-1)
        wrong = ((pred == c) != (y == c)).sum(axis=-1)  # false positives + false negatives
        denom = 2 * tp + wrong
        scores.append(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0))
    return np.mean(scores, axis=0)


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    recalls = []
    for c in range(n_classes):
        support = (y == c).sum(axis=-1)
        hit = ((pred == c) & (y == c)).sum(axis=-1)
        recalls.append(np.where(support > 0, hit / np.maximum(support, 1), np.nan))
    return np.nanmean(recalls, axis=0)


METRICS: dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]] = {
    "accuracy": _accuracy, "macro_f1": _macro_f1, "balanced_accuracy": _balanced_accuracy,
}


def _resample_rows(n: int, resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _bounds(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)


def estimate(y: np.ndarray, pred: np.ndarray, metric: str, n_classes: int) -> float:
    """The metric on the rows themselves (the point the interval is around)."""
    return float(METRICS[metric](np.asarray(y), np.asarray(pred), n_classes))


def interval(y: np.ndarray, pred: np.ndarray, metric: str, n_classes: int | None = None, *,
             resamples: int = RESAMPLES, level: float = LEVEL, seed: int = SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of a label metric (accuracy, macro_f1, balanced_accuracy)."""
    y, pred = np.asarray(y), np.asarray(pred)
    k = n_classes or int(max(y.max(initial=0), pred.max(initial=0)) + 1)
    rows = _resample_rows(len(y), resamples, seed)
    return _bounds(METRICS[metric](y[rows], pred[rows], k), level)


def ece_interval(y: np.ndarray, proba: np.ndarray, bins: int, *, resamples: int = RESAMPLES, level: float = LEVEL,
                 seed: int = SEED) -> tuple[float, float]:
    """Bootstrap interval of the expected calibration error (equal-width confidence bins, as evaluation.py)."""
    y, proba = np.asarray(y), np.asarray(proba)
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = _resample_rows(len(y), resamples, seed)
    conf_r, corr_r, bin_r = confidence[rows], correct[rows], which[rows]
    ece = np.zeros(resamples)
    for b in range(bins):
        in_bin = bin_r == b
        # |sum(correct) - sum(confidence)| / n is the bin's share times |accuracy - mean confidence|.
        ece += np.abs((corr_r * in_bin).sum(axis=1) - (conf_r * in_bin).sum(axis=1)) / len(y)
    return _bounds(ece, level)


def paired_difference(y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, metric: str,
                      n_classes: int | None = None, *, resamples: int = RESAMPLES, level: float = LEVEL,
                      seed: int = SEED) -> dict[str, float]:
    """metric(a) - metric(b) on the same rows, with a paired bootstrap interval and the share of resamples a wins."""
    y, pred_a, pred_b = np.asarray(y), np.asarray(pred_a), np.asarray(pred_b)
    k = n_classes or int(max(y.max(initial=0), pred_a.max(initial=0), pred_b.max(initial=0)) + 1)
    fn = METRICS[metric]
    rows = _resample_rows(len(y), resamples, seed)
    diffs = fn(y[rows], pred_a[rows], k) - fn(y[rows], pred_b[rows], k)
    low, high = _bounds(diffs, level)
    return {"estimate": float(fn(y, pred_a, k) - fn(y, pred_b, k)), "low": low, "high": high,
            "p_better": float((diffs > 0).mean())}

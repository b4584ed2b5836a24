"""Evaluate a classifier on labelled reviews: the numbers, and two plots (matplotlib, Agg backend).

Metrics: accuracy, balanced accuracy, macro F1, per-class precision/recall/F1, ROC-AUC (one-vs-rest macro
when there are more than two classes) and expected calibration error (15 equal-width confidence bins),
with 95% bootstrap intervals (``*_ci_low`` / ``*_ci_high``) for accuracy, balanced accuracy, macro F1
and ECE. `compare` scores the model against the TF-IDF baseline on the same rows: the baseline's numbers
(``baseline_*``) and a paired bootstrap of the difference (``delta_*``).

Example::

    result = evaluate(classifier, read_split(config, "test"), out_dir)
    result.metrics["macro_f1"], result.metrics["macro_f1_ci_low"], result.plots["confusion_matrix"]
    compare(result, score_baseline(baseline, test_rows))["delta_macro_f1_ci_low"]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..common.errors import DataError
from ..data.dataset import Example

ECE_BINS = 15
KEY_METRICS = ("accuracy", "macro_f1", "roc_auc", "ece")
INTERVAL_METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
COMPARED_METRICS = ("accuracy", "macro_f1")


@dataclass
class Evaluation:
    labels: list[str]
    n: int
    metrics: dict[str, float]
    confusion: list[list[int]]
    plots: dict[str, Path] = field(default_factory=dict)
    # What the numbers came from, kept for paired comparisons; not serialised.
    y_true: np.ndarray | None = field(default=None, repr=False)
    proba: np.ndarray | None = field(default=None, repr=False)

    def per_class(self) -> list[dict[str, Any]]:
        return [{"label": label, "precision": self.metrics[f"precision_{label}"],
                 "recall": self.metrics[f"recall_{label}"], "f1": self.metrics[f"f1_{label}"],
                 "support": self.metrics[f"support_{label}"]} for label in self.labels]

    def as_dict(self) -> dict[str, Any]:
        return {"n": self.n, "labels": self.labels, "metrics": self.metrics, "confusion_matrix": self.confusion,
                "plots": {k: str(v) for k, v in self.plots.items()}}


def evaluate(classifier, examples: Sequence[Example], out_dir: Path | None = None, batch_size: int = 32) -> Evaluation:
    """Predict every example with the classifier and score it; plots go to out_dir when given."""
    labels = list(classifier.labels)
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({e.label for e in examples} - set(index))
    if unknown:
        raise DataError(f"test split has labels the model does not know: {', '.join(unknown)} "
                        f"(model labels: {', '.join(labels)})",
                        hint="evaluate on data with the model's classes ([data].classes)")
    y_true = np.array([index[e.label] for e in examples], dtype=int)
    proba = classifier.predict_proba([e.text for e in examples], batch_size=batch_size)
    result = score(labels, y_true, proba, intervals=True)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        result.plots = {
            "confusion_matrix": plot_confusion(labels, np.array(result.confusion), out_dir / "confusion_matrix.png"),
            "reliability_diagram": plot_reliability(y_true, proba, out_dir / "reliability_diagram.png"),
        }
    return result


def score(labels: list[str], y_true: np.ndarray, proba: np.ndarray, intervals: bool = False) -> Evaluation:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    from . import intervals as bootstrap

    k = len(labels)
    y_pred = proba.argmax(axis=1)
    all_classes = list(range(k))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=all_classes, zero_division=0)
    metrics: dict[str, float] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(np.mean(recall[support > 0])) if (support > 0).any() else math.nan,
        "macro_f1": float(f1_score(y_true, y_pred, labels=all_classes, average="macro", zero_division=0)),
        "roc_auc": roc_auc(y_true, proba),
        "ece": expected_calibration_error(y_true, proba),
    }
    for i, label in enumerate(labels):
        metrics[f"precision_{label}"] = float(precision[i])
        metrics[f"recall_{label}"] = float(recall[i])
        metrics[f"f1_{label}"] = float(f1[i])
        metrics[f"support_{label}"] = float(support[i])
    if intervals and len(y_true):
        for name in INTERVAL_METRICS:
            metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"] = bootstrap.interval(y_true, y_pred, name, k)
        metrics["ece_ci_low"], metrics["ece_ci_high"] = bootstrap.ece_interval(y_true, proba, ECE_BINS)
    confusion = confusion_matrix(y_true, y_pred, labels=all_classes).tolist()
    return Evaluation(labels=labels, n=int(len(y_true)), metrics=metrics, confusion=confusion,
                      y_true=np.asarray(y_true), proba=np.asarray(proba))


def score_baseline(baseline, examples: Sequence[Example]) -> Evaluation:
    """The TF-IDF baseline (training/baseline.py) scored on the same rows, with the same intervals."""
    index = {label: i for i, label in enumerate(baseline.labels)}
    y_true = np.array([index[e.label] for e in examples], dtype=int)
    return score(baseline.labels, y_true, baseline.predict_proba([e.text for e in examples]), intervals=True)


def compare(model: Evaluation, baseline: Evaluation) -> dict[str, float]:
    """The baseline's key numbers and intervals as ``baseline_*``, model minus baseline as ``delta_*``.

    ``delta_<metric>_ci_low/high`` is a paired bootstrap interval (same resampled rows for both);
    ``delta_<metric>_p_better`` the share of resamples in which the model scored higher.
    """
    from . import intervals as bootstrap

    if model.y_true is None or baseline.y_true is None or not np.array_equal(model.y_true, baseline.y_true):
        raise ValueError("compare needs both evaluations on the same rows")
    keep = [*KEY_METRICS, "balanced_accuracy", *(f"{m}_ci_{b}" for m in (*INTERVAL_METRICS, "ece") for b in ("low", "high"))]
    out = {f"baseline_{k}": baseline.metrics[k] for k in keep if k in baseline.metrics}
    k = len(model.labels)
    for name in COMPARED_METRICS:
        diff = bootstrap.paired_difference(model.y_true, model.proba.argmax(1), baseline.proba.argmax(1), name, k)
        out[f"delta_{name}"] = diff["estimate"]
        out[f"delta_{name}_ci_low"], out[f"delta_{name}_ci_high"] = diff["low"], diff["high"]
        out[f"delta_{name}_p_better"] = diff["p_better"]
    return out


def roc_auc(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Binary: AUC of the second label's probability; more classes: one-vs-rest macro. NaN if one class only."""
    from sklearn.metrics import roc_auc_score

    if len(np.unique(y_true)) < 2:
        return math.nan
    if proba.shape[1] == 2:
        return float(roc_auc_score(y_true, proba[:, 1]))
    present = np.unique(y_true)
    if len(present) < proba.shape[1]:
        # sklearn's multi-class AUC needs every class in y_true; average over the ones present.
        scores = [roc_auc_score(y_true == c, proba[:, c]) for c in present]
        return float(np.mean(scores))
    return float(roc_auc_score(y_true, proba, multi_class="ovr", average="macro"))


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, bins: int = ECE_BINS) -> float:
    """Sum over confidence bins of |accuracy - mean confidence|, weighted by the bin's share of examples."""
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y_true).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin i holds confidences in (edges[i], edges[i+1]]; a confidence of exactly 0 cannot occur.
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def reliability_bins(y_true: np.ndarray, proba: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, float]]:
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y_true).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    out = []
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": float(in_bin.sum()),
                        "accuracy": float(correct[in_bin].mean()), "confidence": float(confidence[in_bin].mean())})
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display, no GUI toolkit: works in CI and containers
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(labels: list[str], confusion: np.ndarray, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(labels), 1.2 + 1.2 * len(labels)), dpi=100)
    try:
        ax.imshow(confusion, cmap="Blues")
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title("Confusion matrix")
        high = confusion.max() if confusion.size else 0
        for i in range(confusion.shape[0]):
            for j in range(confusion.shape[1]):
                ax.text(j, i, str(int(confusion[i, j])), ha="center", va="center",
                        color="white" if confusion[i, j] > high / 2 else "black")
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def plot_reliability(y_true: np.ndarray, proba: np.ndarray, path: Path) -> Path:
    plt = _pyplot()
    rows = reliability_bins(y_true, proba)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    try:
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
        if rows:
            centres = [(r["lo"] + r["hi"]) / 2 for r in rows]
            ax.bar(centres, [r["accuracy"] for r in rows], width=1.0 / ECE_BINS, edgecolor="black",
                   alpha=0.7, label="accuracy")
            ax.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], marker="o", color="C1",
                    label="mean confidence")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"Reliability (ECE {expected_calibration_error(y_true, proba):.3f})")
        ax.legend(loc="upper left")
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path

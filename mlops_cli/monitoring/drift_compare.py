"""The comparison: Evidently's DataDriftPreset over the current window and the version's reference.

Evidently picks the statistical test per column from its type and size (K-S or Wasserstein for the
numeric features, Z-test, chi-squared or Jensen-Shannon for the predicted label).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from ..registry.drift_reference import CATEGORICAL_COLUMNS, COLUMNS, NUMERIC_COLUMNS
from .drift_result import FeatureDrift, LabelShare

if TYPE_CHECKING:
    import pandas as pd


def frame_from_records(records: list[dict[str, Any]]) -> "pd.DataFrame":
    import pandas as pd

    frame = pd.DataFrame([{c: r[c] for c in COLUMNS} for r in records], columns=list(COLUMNS))
    frame["label"] = frame["label"].astype(str)
    for col in NUMERIC_COLUMNS:
        frame[col] = frame[col].astype(float)
    return frame


def compare(reference: "pd.DataFrame", current: "pd.DataFrame", drift_share: float):
    """Run Evidently's DataDriftPreset. Returns (features, share_drifted, dataset_drift, snapshot)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=list(NUMERIC_COLUMNS), categorical_columns=list(CATEGORICAL_COLUMNS))
    report = Report([DataDriftPreset(columns=list(COLUMNS), drift_share=drift_share)], include_tests=True)
    with warnings.catch_warnings():
        # A constant column (e.g. one confidence value for every text) makes numpy warn while Evidently
        # correlates columns; the test result is still defined, and the noise would hide real warnings.
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = report.run(Dataset.from_pandas(current[list(COLUMNS)], data_definition=definition),
                              Dataset.from_pandas(reference[list(COLUMNS)], data_definition=definition))
    data = snapshot.dict()

    # Per-column results live in ValueDrift metrics; Evidently's own test on each says drifted or not.
    by_metric: dict[str, dict[str, Any]] = {}
    share = None
    for metric in data["metrics"]:
        cfg = metric["config"]
        if cfg["type"].endswith(":ValueDrift"):
            by_metric[metric["id"]] = {"feature": cfg["column"], "method": cfg.get("method") or "",
                                       "threshold": float(cfg.get("threshold") or 0.0), "score": float(metric["value"])}
        elif cfg["type"].endswith(":DriftedColumnsCount"):
            share = float(metric["value"]["share"])
    for test in data["tests"]:
        metric_id = test.get("metric_config", {}).get("metric_id")
        if metric_id in by_metric:
            by_metric[metric_id]["drifted"] = test["status"] == "FAIL"

    order = {name: i for i, name in enumerate(COLUMNS)}
    features = sorted(
        (FeatureDrift(feature=m["feature"], kind="categorical" if m["feature"] in CATEGORICAL_COLUMNS else "numerical",
                      method=m["method"], score=m["score"], threshold=m["threshold"], drifted=bool(m.get("drifted")))
         for m in by_metric.values()),
        key=lambda f: order.get(f.feature, len(order)))
    if share is None:
        share = sum(f.drifted for f in features) / max(len(features), 1)
    # Same rule as Evidently's dataset-drift test: drift when the drifted share reaches the threshold.
    return features, share, share >= drift_share, snapshot


def label_shares(reference: "pd.DataFrame", current: "pd.DataFrame") -> list[LabelShare]:
    ref_counts = reference["label"].value_counts()
    cur_counts = current["label"].value_counts()
    labels = sorted(set(ref_counts.index) | set(cur_counts.index))
    n_ref, n_cur = max(len(reference), 1), max(len(current), 1)
    return [LabelShare(label=str(label), reference_count=int(ref_counts.get(label, 0)),
                       current_count=int(cur_counts.get(label, 0)),
                       reference_share=round(float(ref_counts.get(label, 0)) / n_ref, 4),
                       current_share=round(float(cur_counts.get(label, 0)) / n_cur, 4)) for label in labels]

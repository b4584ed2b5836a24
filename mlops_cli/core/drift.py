"""Drift: the gateway's prediction log over a time window, compared with the served version's reference.

Evidently picks the statistical test per column from its type and size (K-S or Wasserstein for the
numeric features, Z-test, chi-squared or Jensen-Shannon for the predicted label); the dataset drifts
when the share of drifted columns reaches ``[drift].drift_share``. Fewer predictions than
``[drift].min_samples`` give no verdict at all rather than a noisy one.

Example::

    result = run_drift(cfg, window="24h", output=Path("drift.html"))
    result.status, result.dataset_drift, result.share_drifted   # -> "ok", False, 0.2
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .config import Config
from .drift_reference import CATEGORICAL_COLUMNS, COLUMNS, NUMERIC_COLUMNS
from .errors import ConfigError, MlopsError
from .progress import SILENT, Reporter

if TYPE_CHECKING:
    import pandas as pd

STATUS_OK = "ok"
STATUS_INSUFFICIENT = "insufficient_data"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)


# -- time windows ----------------------------------------------------------------------------------

def parse_duration(text: str, what: str = "window") -> timedelta:
    """'30m', '24h', '7d', '2w', '90s' -> timedelta."""
    match = _DURATION.match(str(text))
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"invalid {what} {text!r}: expected a positive number and a unit (s, m, h, d, w)",
                          hint="e.g. 30m, 24h or 7d")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2).lower()])


def parse_since(text: str) -> datetime:
    """An ISO 8601 time ('2026-11-26T08:00', '2026-11-26T08:00:00+01:00'); no offset means UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"invalid --since {text!r}: not an ISO 8601 time",
                          hint="e.g. --since 2026-11-26T08:00 (UTC) or --since 2026-11-26T08:00+01:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


# -- the prediction log ----------------------------------------------------------------------------

@dataclass
class LogScan:
    """What one pass over the prediction log found."""

    path: Path
    exists: bool
    records: list[dict[str, Any]] = field(default_factory=list)  # valid and inside the window
    lines: int = 0
    malformed: int = 0
    outside_window: int = 0
    first_malformed: int | None = None  # 1-based line number, to point the user at it


def _record(raw: str) -> dict[str, Any] | None:
    """A validated record, or None when the line is not one the gateway would have written."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    try:
        ts = datetime.fromisoformat(str(data["ts"]))
        ts = ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
        record: dict[str, Any] = {"ts": ts, "model_version": str(data["model_version"])}
        label = data["label"]
        if not isinstance(label, str) or not label:
            return None
        record["label"] = label
        for name in NUMERIC_COLUMNS:
            value = data[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return None
            record[name] = float(value)
    except (KeyError, TypeError, ValueError):
        return None
    return record


def read_prediction_log(path: Path, start: datetime, end: datetime | None = None) -> LogScan:
    """Valid records with start <= ts <= end. Bad lines are skipped and counted; a missing file is empty."""
    scan = LogScan(path=path, exists=path.is_file())
    if not scan.exists:
        return scan
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.endswith("\n"):
                # The gateway appends whole lines; a last line without its newline is still being
                # written and will be complete on the next read.
                break
            if not line.strip():
                continue
            scan.lines += 1
            record = _record(line)
            if record is None:
                scan.malformed += 1
                scan.first_malformed = scan.first_malformed or number
            elif record["ts"] < start or (end is not None and record["ts"] > end):
                scan.outside_window += 1
            else:
                scan.records.append(record)
    return scan


# -- results ---------------------------------------------------------------------------------------

@dataclass
class FeatureDrift:
    feature: str
    kind: str          # numerical | categorical
    method: str        # the test Evidently chose, e.g. "K-S p_value", "Wasserstein distance (normed)"
    score: float       # the test's statistic: a p-value (drift when below threshold) or a distance (above)
    threshold: float
    drifted: bool


@dataclass
class LabelShare:
    label: str
    reference_count: int
    current_count: int
    reference_share: float
    current_share: float


@dataclass
class DriftResult:
    status: str
    message: str
    window_start: str
    window_end: str
    log_path: str
    model_version: str | None
    samples: int
    min_samples: int
    malformed_lines: int
    other_version_samples: int = 0
    reference_samples: int = 0
    drift_share: float = 0.5
    dataset_drift: bool | None = None
    share_drifted: float | None = None
    drifted_features: int = 0
    features: list[FeatureDrift] = field(default_factory=list)
    labels: list[LabelShare] = field(default_factory=list)
    report_path: str | None = None
    computed_at: str = ""

    @property
    def has_verdict(self) -> bool:
        return self.status == STATUS_OK

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe: a degenerate column can give a NaN statistic, which strict JSON cannot carry."""
        return _finite(asdict(self))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


# -- the comparison --------------------------------------------------------------------------------

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


def write_html_atomically(html: str, path: Path) -> None:
    """Readers (a browser, the drift service's /report) never see a half-written report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(html)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_report_path(config: Config) -> Path:
    return config.state_dir / "drift" / "report.html"


def report_path(config: Config, output: Path | None) -> Path:
    """`-o DIR` (an existing directory) means report.html inside it, as `cp f DIR` does."""
    if output is None:
        return default_report_path(config)
    return output / default_report_path(config).name if output.is_dir() else output


def registry_reference(config: Config, version: str) -> "pd.DataFrame":
    from . import registry
    from .drift_reference import load_reference

    return load_reference(config, registry.resolve_version(config, version=version))


ReferenceLoader = Callable[[Config, str], "pd.DataFrame"]


def run_drift(
    config: Config,
    *,
    window: str | None = None,
    since: str | datetime | None = None,
    version: str | None = None,
    output: Path | None = None,
    now: datetime | None = None,
    reference_loader: ReferenceLoader | None = None,
    reporter: Reporter = SILENT,
) -> DriftResult:
    """Compare the window of the prediction log with the reference of `version` (default: the version
    that served the latest prediction in the window) and write the Evidently HTML report."""
    now = now or datetime.now(timezone.utc)
    if since is not None:
        start = since if isinstance(since, datetime) else parse_since(since)
    else:
        start = now - parse_duration(window or config.drift.window)
    if start >= now:
        raise ConfigError(f"the window starts at {start.isoformat()}, which is not in the past",
                          hint="pass an earlier --since or a positive --window")

    log_path = config.path(config.gateway.prediction_log)
    scan = read_prediction_log(log_path, start, now)
    if scan.malformed:
        reporter.warn(f"{log_path}: skipped {scan.malformed} malformed line(s) (first at line {scan.first_malformed})")
    records = sorted(scan.records, key=lambda r: r["ts"])
    chosen = str(version) if version is not None else (records[-1]["model_version"] if records else None)
    current = [r for r in records if r["model_version"] == chosen]
    result = DriftResult(
        status=STATUS_INSUFFICIENT, message="", window_start=start.isoformat(), window_end=now.isoformat(),
        log_path=str(log_path), model_version=chosen, samples=len(current), min_samples=config.drift.min_samples,
        malformed_lines=scan.malformed, other_version_samples=len(records) - len(current),
        drift_share=config.drift.drift_share, computed_at=datetime.now(timezone.utc).isoformat())

    if len(current) < config.drift.min_samples:
        where = "no prediction log yet" if not scan.exists else f"{len(current)} prediction(s)"
        of_version = f" of model version {chosen}" if chosen else ""
        result.message = (f"not enough data for a drift verdict: {where}{of_version} between "
                          f"{start.isoformat(timespec='seconds')} and {now.isoformat(timespec='seconds')} "
                          f"(need [drift].min_samples = {config.drift.min_samples})")
        return result

    reporter.info(f"comparing {len(current)} prediction(s) of version {chosen} with its reference")
    reference = (reference_loader or registry_reference)(config, chosen)
    if len(reference) == 0:
        raise MlopsError(f"the drift reference of model version {chosen} is empty",
                         hint="re-register the version to recompute it")
    current_frame = frame_from_records(current)
    features, share, dataset_drift, snapshot = compare(reference, current_frame, config.drift.drift_share)
    target = report_path(config, output)
    write_html_atomically(snapshot.get_html_str(as_iframe=False), target)

    result.status = STATUS_OK
    result.reference_samples = len(reference)
    result.features = features
    result.share_drifted = round(float(share), 4)
    result.drifted_features = sum(f.drifted for f in features)
    result.dataset_drift = bool(dataset_drift)
    result.labels = label_shares(reference, current_frame)
    result.report_path = str(target)
    verdict = "dataset drift detected" if dataset_drift else "no dataset drift"
    result.message = (f"{verdict}: {result.drifted_features} of {len(features)} column(s) drifted "
                      f"(share {result.share_drifted:.2f}, threshold {config.drift.drift_share:.2f})")
    return result

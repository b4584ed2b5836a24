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

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..common.atomic_file import write_atomically
from ..common.errors import ConfigError, MlopsError
from ..common.output_path import writable_file
from ..common.progress import SILENT, Reporter
from ..common.time_window import parse_duration, parse_since
from ..config.settings import Config
from .drift_compare import compare, frame_from_records, label_shares
from .drift_result import STATUS_INSUFFICIENT, STATUS_OK, DriftResult
from .prediction_log_reader import rotated_and_current, sample_prediction_log

if TYPE_CHECKING:
    import pandas as pd


def default_report_path(config: Config) -> Path:
    return config.state_dir / "drift" / "report.html"


def report_path(config: Config, output: Path | None) -> Path:
    """`-o DIR` (an existing directory) means report.html inside it, as `cp f DIR` does; checked before any
    work (common/output_path.py: missing folders are created)."""
    if output is None:
        return writable_file(default_report_path(config), "report")
    return writable_file(output / default_report_path(config).name if output.is_dir() else output)


def registry_reference(config: Config, version: str) -> "pd.DataFrame":
    from ..registry import versions as registry
    from ..registry.drift_reference import load_reference

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
    target = report_path(config, output)  # an unusable -o fails now, not after the comparison
    if since is not None:
        start = since if isinstance(since, datetime) else parse_since(since)
    else:
        start = now - parse_duration(window or config.drift.window)
    if start >= now:
        raise ConfigError(f"the window starts at {start.isoformat()}, which is not in the past",
                          hint="pass an earlier --since or a positive --window")

    if version is not None and reference_loader is None:
        from ..registry import versions as registry

        registry.resolve_version(config, version=str(version))  # a version that does not exist says so
    log_path = config.path(config.gateway.prediction_log)
    scan = sample_prediction_log(rotated_and_current(log_path, config.gateway.prediction_log_backups), start, now,
                                 sample_size=config.drift.sample_size, seed=config.data.seed)
    if scan.malformed:
        reporter.warn(f"{log_path}: skipped {scan.malformed} malformed line(s) (first at line {scan.first_malformed})")
    chosen = str(version) if version is not None else scan.latest_version
    in_window = scan.counts.get(chosen, 0) if chosen is not None else 0
    current = sorted(scan.samples.get(chosen, []) if chosen is not None else [], key=lambda r: r["ts"])
    result = DriftResult(
        status=STATUS_INSUFFICIENT, message="", window_start=start.isoformat(), window_end=now.isoformat(),
        log_path=str(log_path), model_version=chosen, samples=in_window, min_samples=config.drift.min_samples,
        malformed_lines=scan.malformed, other_version_samples=sum(scan.counts.values()) - in_window,
        drift_share=config.drift.drift_share, computed_at=datetime.now(timezone.utc).isoformat(),
        sample_size=config.drift.sample_size, compared=len(current))

    if in_window < config.drift.min_samples:
        where = "no prediction log yet" if not scan.exists else f"{in_window} prediction(s)"
        of_version = f" of model version {chosen}" if chosen else ""
        result.message = (f"not enough data for a drift verdict: {where}{of_version} between "
                          f"{start.isoformat(timespec='seconds')} and {now.isoformat(timespec='seconds')} "
                          f"(need [drift].min_samples = {config.drift.min_samples})")
        return result

    sampled = f"a random sample of {len(current)} of " if len(current) < in_window else ""
    reporter.info(f"comparing {sampled}{in_window} prediction(s) of version {chosen} with its reference")
    reference = (reference_loader or registry_reference)(config, chosen)
    if len(reference) == 0:
        raise MlopsError(f"the drift reference of model version {chosen} is empty",
                         hint="re-register the version to recompute it")
    current_frame = frame_from_records(current)
    features, share, dataset_drift, snapshot = compare(reference, current_frame, config.drift.drift_share)

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
                      f"(share {result.share_drifted:.2f}, threshold {config.drift.drift_share:.2f}; "
                      f"{sampled or 'all '}{in_window} prediction(s) compared, [drift].sample_size {config.drift.sample_size})")
    # Readers (a browser, the drift service's /report) never see a half-written report.
    write_atomically(target, with_heading(snapshot.get_html_str(as_iframe=False), config, result))
    return result


def with_heading(html: str, config: Config, result: DriftResult) -> str:
    """Evidently's page says nothing of what it compares (no <title>, no heading): a saved report must
    say which project, model version and window it is about, and its verdict."""
    from html import escape

    title = f"Drift report: {config.project.name}, model version {result.model_version}"
    rows = [("project", config.project.name), ("model version", result.model_version),
            ("window", f"{result.window_start} to {result.window_end}"),
            ("predictions", f"{result.compared} compared of {result.samples} in the window; "
                            f"{result.reference_samples} reference rows"),
            ("verdict", result.message), ("computed at", result.computed_at)]
    header = (f'<header style="font-family: sans-serif; padding: 1em 2em"><h1>{escape(title)}</h1><table>'
              + "".join(f"<tr><th style=\"text-align: left; padding-right: 1em\">{escape(k)}</th>"
                        f"<td>{escape(str(v))}</td></tr>" for k, v in rows) + "</table></header>")
    html = html.replace("</head>", f"<title>{escape(title)}</title></head>", 1)
    return html.replace("<body>", f"<body>{header}", 1)

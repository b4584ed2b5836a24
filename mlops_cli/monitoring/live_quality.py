"""Live quality: how right each serving version is on the labels users sent back (the feedback log).

Per model version, over a window of feedback (by when the label arrived): accuracy and macro F1 of the
prediction it made against the label, each with the percentile bootstrap interval of training/intervals.py
(the same 95%, 1000 resamples and seed as the registry gate), and the label count. A version with fewer
than [feedback].min_labels labels gets its count only. `below_floor`: the whole accuracy interval is
under [feedback].accuracy_floor, i.e. the drop is not sampling noise (the alert and the loop's trigger).

Example::

    quality = live_quality(config, window="6h")
    quality.versions["3"].accuracy, quality.versions["3"].accuracy_interval, quality.versions["3"].labels
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..common.errors import ConfigError
from ..common.time_window import parse_duration, parse_since
from ..config.settings import Config
from ..data.dataset import labels_for
from .feedback_log import feedback_log


@dataclass
class VersionQuality:
    model_version: str
    labels: int
    accuracy: float | None = None
    accuracy_interval: tuple[float, float] | None = None
    macro_f1: float | None = None
    macro_f1_interval: tuple[float, float] | None = None
    below_floor: bool = False


@dataclass
class LiveQuality:
    window_start: str
    window_end: str
    min_labels: int
    accuracy_floor: float
    versions: dict[str, VersionQuality] = field(default_factory=dict)
    text_only_labels: int = 0   # imported text + label rows: training data, not a judgement of a version

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["versions"] = [asdict(v) for v in self.versions.values()]
        return data


def window_start(config: Config, window: str | None, since: str | datetime | None, now: datetime) -> datetime:
    if window is not None and since is not None:
        raise ConfigError("--window and --since both given", hint="pass one: --window 24h or --since 2026-11-26T08:00")
    if since is not None:
        start = since if isinstance(since, datetime) else parse_since(since)
    else:
        start = now - parse_duration(window or config.feedback.window)
    if start >= now:
        raise ConfigError(f"the window starts at {start.isoformat()}, which is not in the past",
                          hint="pass an earlier --since or a positive --window")
    return start


def live_quality(config: Config, *, window: str | None = None, since: str | datetime | None = None,
                 now: datetime | None = None, records: list[dict[str, Any]] | None = None) -> LiveQuality:
    now = now or datetime.now(timezone.utc)
    start = window_start(config, window, since, now)
    result = LiveQuality(start.isoformat(), now.isoformat(), config.feedback.min_labels, config.feedback.accuracy_floor)
    pairs: dict[str, list[tuple[str, str]]] = {}
    for record in feedback_log(config).records() if records is None else records:
        if not start <= _when(record) <= now:
            continue
        if not record.get("request_id") or not isinstance(record.get("predicted"), str):
            result.text_only_labels += 1
            continue
        pairs.setdefault(str(record["model_version"]), []).append((record["label"], record["predicted"]))
    classes = list(labels_for(config.data.classes))
    for version in sorted(pairs, key=_version_order):
        result.versions[version] = score_version(version, pairs[version], classes, config)
    return result


def score_version(version: str, pairs: list[tuple[str, str]], classes: list[str], config: Config) -> VersionQuality:
    quality = VersionQuality(version, len(pairs))
    if len(pairs) < config.feedback.min_labels:
        return quality
    import numpy as np

    from ..training.intervals import estimate, interval

    names = classes + sorted({name for pair in pairs for name in pair} - set(classes))
    code = {name: i for i, name in enumerate(names)}
    y = np.array([code[label] for label, _ in pairs])
    pred = np.array([code[predicted] for _, predicted in pairs])
    k = len(names)
    quality.accuracy = round(estimate(y, pred, "accuracy", k), 4)
    quality.macro_f1 = round(estimate(y, pred, "macro_f1", k), 4)
    quality.accuracy_interval = _rounded(interval(y, pred, "accuracy", k))
    quality.macro_f1_interval = _rounded(interval(y, pred, "macro_f1", k))
    quality.below_floor = quality.accuracy_interval[1] < config.feedback.accuracy_floor
    return quality


def _rounded(bounds: tuple[float, float]) -> tuple[float, float]:
    return round(bounds[0], 4), round(bounds[1], 4)


def _when(record: dict[str, Any]) -> datetime:
    try:
        ts = datetime.fromisoformat(str(record.get("ts")))
    except ValueError:
        return datetime.min.replace(tzinfo=timezone.utc)
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)

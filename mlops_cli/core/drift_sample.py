"""One streaming pass over the prediction log: counts for the whole window, a bounded sample to compare.

A gateway at 100 requests/s logs 8.6 M lines a day; holding a day in memory would take gigabytes. So
the log is read line by line and every model version in the window keeps a uniform random sample of
at most `sample_size` records (reservoir sampling, Vitter's algorithm R, seeded: the same log gives
the same sample) plus its exact count. Memory is bounded by sample_size x versions, whatever the log.

Example::

    window = sample_prediction_log(path, start, end, sample_size=5000)
    window.latest_version, window.counts["3"], len(window.samples["3"])
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

NUMERIC_FIELDS = ("text_length", "word_count", "oov_share", "confidence")


@dataclass
class WindowSample:
    path: Path
    exists: bool
    sample_size: int
    lines: int = 0
    malformed: int = 0
    outside_window: int = 0
    first_malformed: int | None = None  # 1-based line number, to point the user at it
    counts: dict[str, int] = field(default_factory=dict)             # version -> records in the window
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # version -> at most sample_size
    latest_ts: datetime | None = None
    latest_version: str | None = None

    @property
    def in_window(self) -> int:
        return sum(self.counts.values())


def parse_record(raw: str | bytes) -> dict[str, Any] | None:
    """A validated record, or None when the line is not one the gateway would have written."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    try:
        ts = datetime.fromisoformat(str(data["ts"]))
        ts = ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
        label = data["label"]
        if not isinstance(label, str) or not label:
            return None
        record: dict[str, Any] = {"ts": ts, "model_version": str(data["model_version"]), "label": label}
        for name in NUMERIC_FIELDS:
            value = data[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return None
            record[name] = float(value)
    except (KeyError, TypeError, ValueError):
        return None
    return record


def sample_prediction_log(path: Path, start: datetime, end: datetime | None = None, *, sample_size: int,
                          seed: int = 0) -> WindowSample:
    """Counts and a per-version reservoir sample of the records with start <= ts <= end."""
    window = WindowSample(path=path, exists=path.is_file(), sample_size=sample_size)
    if not window.exists:
        return window
    rng = random.Random(seed)
    counts, samples = window.counts, window.samples
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.endswith(b"\n"):
                # The gateway appends whole lines; a last line without its newline is still being
                # written and will be complete on the next read.
                break
            if not line.strip():
                continue
            window.lines += 1
            record = parse_record(line)
            if record is None:
                window.malformed += 1
                window.first_malformed = window.first_malformed or number
                continue
            ts = record["ts"]
            if ts < start or (end is not None and ts > end):
                window.outside_window += 1
                continue
            version = record["model_version"]
            seen = counts.get(version, 0) + 1
            counts[version] = seen
            reservoir = samples.setdefault(version, [])
            if seen <= sample_size:
                reservoir.append(record)
            else:
                slot = rng.randrange(seen)
                if slot < sample_size:
                    reservoir[slot] = record
            if window.latest_ts is None or ts >= window.latest_ts:
                window.latest_ts, window.latest_version = ts, version
    return window

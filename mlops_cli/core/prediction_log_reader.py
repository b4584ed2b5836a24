"""Reading the gateway's prediction log: the valid records inside a time window, bad lines counted."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .drift_reference import NUMERIC_COLUMNS


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

"""The prediction log: one JSON line per prediction, the drift monitor's 'current' data.

Rotation and retention: past `max_bytes` the file becomes `<name>.1` (older ones shift to `.2` ...);
at most `backups` rotated files are kept and any older than `max_age_s` is deleted. A write that
fails (disk full, file unwritable) never fails the prediction: it is counted (`failures`, exported by
the gateway as `mlops_prediction_log_write_failures_total`) and logged once until a write succeeds again.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("mlops.prediction_log")


class PredictionLog:
    def __init__(self, path: Path, log_text: bool, *, max_bytes: int = 50_000_000, backups: int = 5,
                 max_age_s: float = 7 * 86400.0, on_failure: Callable[[], None] | None = None) -> None:
        self.path = path
        self.log_text = log_text
        self.max_bytes = max_bytes
        self.backups = backups
        self.max_age_s = max_age_s
        self.failures = 0
        self.rotations = 0
        self._on_failure = on_failure
        self._failing = False
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # reported by the first write, which is counted like any other failure
        self._expire()

    def record(self, request_id: str, text: str, label: str, confidence: float, model_version: str,
               features: dict[str, Any]) -> None:
        entry = {
            "ts": datetime.now(timezone.utc).isoformat(),
            "request_id": request_id,
            "model_version": str(model_version),
            "label": label,
            "confidence": round(float(confidence), 6),
            "text_length": int(features.get("text_length", len(text))),
            "word_count": int(features.get("word_count", len(text.split()))),
            "oov_share": round(float(features.get("oov_share", 0.0)), 6),
        }
        if self.log_text:
            entry["text"] = text
        self.append(json.dumps(entry, ensure_ascii=False) + "\n")

    def append(self, lines: str) -> None:
        """Write whole lines; rotate first when they would take the file past max_bytes."""
        data = lines.encode("utf-8")
        # One write per call in append mode: lines from concurrent requests never interleave.
        with self._lock:
            try:
                self._rotate_if_needed(len(data))
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    written = os.write(fd, data)
                finally:
                    os.close(fd)
                if written != len(data):
                    raise OSError(f"short write ({written} of {len(data)} bytes)")
            except OSError as exc:
                self._failed(exc)
                return
            if self._failing:
                self._failing = False
                log.warning("prediction log writable again", extra={"path": str(self.path), "failures": self.failures})

    def _failed(self, exc: OSError) -> None:
        self.failures += 1
        if self._on_failure is not None:
            self._on_failure()
        if not self._failing:  # once per outage, not once per request
            self._failing = True
            log.error("prediction log write failed; predictions are still served but not logged",
                      extra={"path": str(self.path), "error": str(exc)})

    def _rotate_if_needed(self, incoming: int) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size == 0 or size + incoming <= self.max_bytes:
            return
        for n in range(self.backups, 0, -1):
            older = self._rotated(n)
            if older.exists():
                if n == self.backups:
                    older.unlink()
                else:
                    older.replace(self._rotated(n + 1))
        if self.backups:
            self.path.replace(self._rotated(1))
        else:
            self.path.unlink()
        self.rotations += 1
        self._expire()

    def _expire(self) -> None:
        cutoff = time.time() - self.max_age_s
        for n in range(1, self.backups + 1):
            older = self._rotated(n)
            try:
                if older.stat().st_mtime < cutoff:
                    older.unlink()
            except OSError:
                continue

    def _rotated(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")


def log_files(path: Path, backups: int) -> list[Path]:
    """The log and its rotated files, oldest first: what a reader of a time window scans."""
    rotated = [path.with_name(f"{path.name}.{n}") for n in range(backups, 0, -1)]
    return [p for p in (*rotated, path) if p.is_file()]

"""The prediction log: one JSON line per prediction, the drift monitor's 'current' data.

Rotation and retention: past `max_bytes` the file becomes `<name>.1` (older ones shift to `.2` ...);
at most `backups` rotated files are kept and any older than `max_age_s` is deleted. A write that
fails (disk full, file unwritable) never fails the prediction: it is counted (`failures`, exported by
the gateway as `mlops_prediction_log_write_failures_total`) and logged once until a write succeeds again.

`batched=True` (the gateway): `record()` only enqueues; one writer thread writes whatever has queued
up with one `append` (a group commit), so a request never waits on the disk and, under load, hundreds
of lines cost one system call. An idle log is written at once, so readers see a line within milliseconds.
Without it every `record()` writes before it returns.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..common.log_rotation import expire, log_files, rotate_if_needed  # noqa: F401 (log_files: readers import it here)

log = logging.getLogger("mlops.prediction_log")
_STOP = object()


class PredictionLog:
    def __init__(self, path: Path, log_text: bool, *, max_bytes: int = 50_000_000, backups: int = 5,
                 max_age_s: float = 7 * 86400.0, on_failure: Callable[[], None] | None = None,
                 batched: bool = False) -> None:
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
        self._queue: queue.SimpleQueue | None = None
        if batched:
            self._queue = queue.SimpleQueue()
            self._writer = threading.Thread(target=self._write_loop, name="prediction-log", daemon=True)
            self._writer.start()

    def record(self, request_id: str, text: str, label: str, confidence: float, model_version: str,
               features: dict[str, Any]) -> None:
        item = (datetime.now(timezone.utc), request_id, text, label, confidence, model_version, features)
        if self._queue is not None:
            self._queue.put(item)
        else:
            self.append(self._line(*item))

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued, then stop the writer (batched mode; a no-op otherwise)."""
        if self._queue is not None:
            self._queue.put(_STOP)
            self._writer.join(timeout_s)

    def _write_loop(self) -> None:
        assert self._queue is not None
        while True:
            items = [self._queue.get()]
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            lines = [self._line(*item) for item in items if item is not _STOP]
            if lines:
                self.append("".join(lines))
            if len(lines) < len(items):
                return

    def _line(self, ts: datetime, request_id: str, text: str, label: str, confidence: float, model_version: str,
              features: dict[str, Any]) -> str:
        entry = {
            "ts": ts.isoformat(),
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
        return json.dumps(entry, ensure_ascii=False) + "\n"

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
                self._failed(exc, lines.count("\n"))
                return
            if self._failing:
                self._failing = False
                log.warning("prediction log writable again", extra={"path": str(self.path), "failures": self.failures})

    def _failed(self, exc: OSError, lost: int = 1) -> None:
        self.failures += lost  # lines lost, whether written one by one or grouped
        if self._on_failure is not None:
            for _ in range(lost):
                self._on_failure()
        if not self._failing:  # once per outage, not once per request
            self._failing = True
            log.error("prediction log write failed; predictions are still served but not logged",
                      extra={"path": str(self.path), "error": str(exc)})

    def _rotate_if_needed(self, incoming: int) -> None:
        if rotate_if_needed(self.path, incoming, self.max_bytes, self.backups):
            self.rotations += 1
            self._expire()

    def _expire(self) -> None:
        expire(self.path, self.backups, self.max_age_s)


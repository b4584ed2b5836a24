"""The feedback log: one JSON line per label, beside the prediction log and rotated like it.

Durable by construction: `append` writes every record of one request with a single `write`, then
`fsync`s the file (and, after a rotation or the first write, its directory) before it returns, so a label
the gateway has acknowledged survives `kill -9` and a power cut. A write that fails part-way is cut back
(`ftruncate` to the size before it): a batch is stored whole or not at all. Writers (the gateway,
`mlops feedback import`) hold an exclusive `flock` on `<log>.lock` across check-and-append, so two of them
never store the same label twice; a writer that sees the file changed by another re-reads what is labelled.

A record::

    {"ts": "...", "key": "r:<request_id>#0", "request_id": "...", "index": 0, "label": "Positive",
     "model_version": "3", "predicted": "Negative", "source": "gateway", "text": "..."}

`text` is there when it is known (the prediction log keeps texts with [gateway].log_text, an import of
text + label always): retraining needs it, live accuracy does not.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import orjson

from ..common.log_rotation import expire, log_files, rotate_if_needed


@dataclass
class _Seen:
    """What the writer knows of the files: which keys are labelled, as of which (inode, size) of the log."""

    keys: dict[str, str] = field(default_factory=dict)   # key -> label
    stamp: tuple[int, int] | None = None


class FeedbackLog:
    def __init__(self, path: Path, *, max_bytes: int = 50_000_000, backups: int = 5,
                 max_age_s: float = 7 * 86400.0) -> None:
        self.path, self.max_bytes, self.backups, self.max_age_s = Path(path), max_bytes, backups, max_age_s
        self._seen = _Seen()

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    @contextmanager
    def locked(self) -> Iterator[dict[str, str]]:
        """Exclusive across processes; yields the labelled keys (key -> label), current as of now."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if self._stamp() != self._seen.stamp:
                self._seen = _Seen({r["key"]: r["label"] for r in self.records()}, self._stamp())
            yield self._seen.keys
        finally:
            os.close(fd)  # releases the flock

    def append(self, records: list[dict[str, Any]]) -> None:
        """Store all of `records` durably, or none of them (raises OSError). Call inside `locked()`."""
        if not records:
            return
        data = b"".join(orjson.dumps(r) + b"\n" for r in records)
        rotated = rotate_if_needed(self.path, len(data), self.max_bytes, self.backups)
        if rotated:
            expire(self.path, self.backups, self.max_age_s)
        created = rotated or not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            before = os.fstat(fd).st_size
            try:
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(f"short write to {self.path} ({written} of {len(data)} bytes)")
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, before)  # nothing half-stored: the next reader sees the file as it was
                raise
        finally:
            os.close(fd)
        if created:
            _fsync_dir(self.path.parent)  # the new file's name must survive a crash too
        for record in records:
            self._seen.keys[record["key"]] = record["label"]
        self._seen.stamp = self._stamp()

    def records(self) -> list[dict[str, Any]]:
        """Every stored record, oldest first (rotated files included); torn or foreign lines skipped."""
        out: list[dict[str, Any]] = []
        for path in log_files(self.path, self.backups):
            with path.open("rb") as fh:
                for line in fh:
                    if not line.endswith(b"\n"):
                        break
                    try:
                        record = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(record, dict) and isinstance(record.get("key"), str) \
                            and isinstance(record.get("label"), str):
                        out.append(record)
        return out

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_size


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def feedback_log(config) -> FeedbackLog:
    """The project's feedback log, with the prediction log's rotation and retention."""
    gw = config.gateway
    return FeedbackLog(config.path(gw.feedback_log), max_bytes=gw.prediction_log_max_bytes,
                       backups=gw.prediction_log_backups, max_age_s=gw.prediction_log_max_age_s)

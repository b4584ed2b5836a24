"""Checking labels before anything is stored: against the prediction log, the model's classes and what is
already labelled. One bad item refuses the whole batch, and every bad item is named.

A prediction is named by the request id the gateway answered with (`X-Request-ID`) and, for
`/predict/batch`, its position in the request (`index`, from 0). The `PredictionIndex` holds the newest
`size` request ids: filled from the prediction log's files at start, then by the gateway as it answers (the
log itself is written a moment later by its writer thread).

Example::

    index = PredictionIndex.from_log(lambda: log_files(path, 5), size=200_000)
    records = check_items([{"request_id": rid, "label": "Positive"}], index, labelled, ("Negative", "Positive"))
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import orjson

from ..common.text_policy import clean_text
from ..data.labels import rating_label

MAX_ID_CHARS = 200
NAMED = 20  # an error names this many bad items, and counts them all


@dataclass(frozen=True)
class Served:
    """One logged prediction."""

    model_version: str
    predicted: str
    labels: tuple[str, ...] = ()   # the model's classes when the gateway saw them; () when read from the log
    text: str | None = None


@dataclass(frozen=True)
class Problem:
    item: int          # position in the batch or 1-based row of a file
    status: int        # the HTTP status this problem alone would get
    code: str
    message: str


class FeedbackRejected(Exception):
    """The batch is refused, nothing stored. `status` is the most telling of the problems' statuses."""

    def __init__(self, problems: list[Problem], what: str = "item") -> None:
        self.problems = problems
        self.status = min(problems, key=lambda p: _PRIORITY[p.status]).status
        self.code = next(p.code for p in problems if p.status == self.status)
        shown = "; ".join(f"{what} {p.item}: {p.message}" for p in problems[:NAMED])
        more = f"; and {len(problems) - NAMED} more" if len(problems) > NAMED else ""
        noun = f"{what}s" if len(problems) > 1 else what
        super().__init__(f"{len(problems)} bad {noun}, nothing stored: {shown}{more}")
        self.message = str(self)


_PRIORITY = {400: 0, 413: 1, 422: 2, 404: 3, 409: 4}


class PredictionIndex:
    """request id -> its predictions, newest `size` request ids (thread-safe).

    With `files` (the prediction log's files, oldest first) a request id it does not hold sends it to read
    what was appended since it last looked: several gateway replicas write one log, and each must accept
    labels for the others' predictions. Lines of predictions this process added itself are skipped there.
    """

    def __init__(self, size: int, files: Callable[[], list[Path]] | None = None) -> None:
        self.size = size
        self._files = files
        self._by_id: dict[str, list[Served]] = {}
        self._own: set[str] = set()
        self._offsets: dict[int, int] = {}   # inode -> bytes read (a rotated file keeps its inode)
        self._lock = threading.Lock()
        self._reading = threading.Lock()

    @classmethod
    def from_log(cls, files: Callable[[], list[Path]], size: int) -> "PredictionIndex":
        index = cls(size, files)
        index.catch_up()
        return index

    def catch_up(self) -> None:
        """Index the lines appended to the log files since the last call."""
        if self._files is None:
            return
        with self._reading:
            seen = set()
            for path in self._files():
                try:
                    with path.open("rb") as fh:
                        inode = os.fstat(fh.fileno()).st_ino
                        seen.add(inode)
                        fh.seek(self._offsets.get(inode, 0))
                        data = fh.read()
                except OSError:
                    continue
                whole = data[:data.rfind(b"\n") + 1]  # a last line still being written is read next time
                self._offsets[inode] = self._offsets.get(inode, 0) + len(whole)
                for line in whole.splitlines():
                    self._add_line(line)
            self._offsets = {inode: n for inode, n in self._offsets.items() if inode in seen}

    def _add_line(self, line: bytes) -> None:
        try:
            row = orjson.loads(line)
            rid, version, label = row["request_id"], row["model_version"], row["label"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        if isinstance(rid, str) and isinstance(label, str) and rid not in self._own:
            text = row.get("text")
            self.add(rid, Served(str(version), label, (), text if isinstance(text, str) else None))

    def add(self, request_id: str, served: Served, *, own: bool = False) -> None:
        """One more prediction of `request_id` (a batch adds one per text, in order). `own`: this process made
        it, so its prediction-log line is not indexed again."""
        with self._lock:
            if own:
                self._own.add(request_id)
            known = self._by_id.get(request_id)
            if known is None:
                self._by_id[request_id] = [served]
                while len(self._by_id) > self.size:
                    oldest = next(iter(self._by_id))
                    del self._by_id[oldest]
                    self._own.discard(oldest)
            else:
                known.append(served)

    def find(self, request_id: str) -> list[Served]:
        with self._lock:
            found = list(self._by_id.get(request_id, ()))
        if found or self._files is None:
            return found
        self.catch_up()
        with self._lock:
            return list(self._by_id.get(request_id, ()))


def prediction_key(request_id: str, index: int) -> str:
    return f"r:{request_id}#{index}"


def text_key(text: str) -> str:
    return "t:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def canonical_label(raw: Any, allowed: tuple[str, ...]) -> str | None:
    """The class a label names (case-insensitive, the dataset's aliases such as pos/neg), or None."""
    if not isinstance(raw, str):
        return None
    label = next((a for a in allowed if a.lower() == raw.strip().lower()), None) or rating_label(raw)
    return label if label in allowed else None


def check_items(items: list[Any], index: PredictionIndex, labelled: dict[str, str], allowed: tuple[str, ...],
                source: str, *, numbers: list[int] | None = None, what: str = "item",
                texts: bool = False) -> list[dict[str, Any]]:
    """The records to store for `items` ({request_id, label[, index]}; with `texts`, also {text, label}: a label
    for a text no prediction named), or FeedbackRejected naming each bad one by its number (`numbers`, else
    its position). `allowed`: the classes when the gateway has not seen the model's own."""
    problems: list[Problem] = []
    records: list[dict[str, Any]] = []
    batch_keys: set[str] = set()
    now = datetime.now(timezone.utc).isoformat()
    for n, item in zip(numbers or range(len(items)), items):
        if texts and isinstance(item, dict) and not item.get("request_id"):
            record = _check_text(item, allowed)
        else:
            record = _check_one(item, index, allowed)
        if isinstance(record, Problem):
            problems.append(Problem(n, record.status, record.code, record.message))
            continue
        key = record["key"]
        if key in labelled or key in batch_keys:
            where = "already labelled" + (f" ({labelled[key]})" if key in labelled else f" earlier in this {'file' if what == 'row' else 'batch'}")
            problems.append(Problem(n, 409, "duplicate", f"{_name(record)} is {where}"))
            continue
        batch_keys.add(key)
        records.append({"ts": now, **record, "source": source})
    if problems:
        raise FeedbackRejected(problems, what)
    return records


def _check_text(item: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any] | Problem:
    text = clean_text(item["text"]) if isinstance(item.get("text"), str) else ""
    if not text:
        return Problem(0, 422, "empty_text", "neither a request_id nor a text")
    label = canonical_label(item.get("label"), allowed)
    if label is None:
        return Problem(0, 422, "unknown_label", f"label {item.get('label')!r} is not one of {', '.join(allowed)}")
    return {"key": text_key(text), "request_id": None, "index": None, "label": label, "model_version": None,
            "predicted": None, "text": text}


def _check_one(item: Any, index: PredictionIndex, allowed: tuple[str, ...]) -> dict[str, Any] | Problem:
    if not isinstance(item, dict):
        return Problem(0, 422, "invalid_input", 'expected {"request_id": "...", "label": "..."}')
    rid, position = item.get("request_id"), item.get("index")
    if not isinstance(rid, str) or not rid.strip() or len(rid) > MAX_ID_CHARS:
        return Problem(0, 422, "invalid_input", f"request_id must be a non-empty string of at most {MAX_ID_CHARS} "
                                                "characters (the X-Request-ID of the prediction)")
    if position is not None and (isinstance(position, bool) or not isinstance(position, int) or position < 0):
        return Problem(0, 422, "invalid_input", "index must be a whole number >= 0 (the text's position in a batch)")
    served = index.find(rid)
    if not served:
        return Problem(0, 404, "unknown_request_id",
                       f"no logged prediction has request id {rid!r} (or it is older than the newest "
                       f"{index.size} requests)")
    if position is None and len(served) > 1:
        return Problem(0, 422, "index_required", f"request {rid!r} classified {len(served)} texts: "
                                                 "say which with \"index\" (from 0)")
    position = position or 0
    if position >= len(served):
        return Problem(0, 422, "invalid_input", f"request {rid!r} classified {len(served)} text(s); "
                                                f"index {position} is past them")
    prediction = served[position]
    classes = prediction.labels or allowed
    label = canonical_label(item.get("label"), classes)
    if label is None:
        return Problem(0, 422, "unknown_label", f"label {item.get('label')!r} is not one of the model's classes "
                                                f"({', '.join(classes)})")
    record: dict[str, Any] = {"key": prediction_key(rid, position), "request_id": rid, "index": position,
                              "label": label, "model_version": prediction.model_version,
                              "predicted": prediction.predicted}
    if prediction.text is not None:
        record["text"] = prediction.text
    return record


def _name(record: dict[str, Any]) -> str:
    if record.get("request_id"):
        return f"prediction {record['request_id']!r}" + (f" #{record['index']}" if record.get("index") else "")
    return "this text"

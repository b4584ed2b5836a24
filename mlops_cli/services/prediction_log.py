"""The prediction log: one JSON line per prediction, the drift monitor's 'current' data.

`record()` only enqueues: one writer thread owns the file and writes whatever has queued up in one
`write` (a group commit), so a request never waits on the disk and, under load, hundreds of lines
cost one system call. An idle log is written at once, so readers see a line within milliseconds.
"""

from __future__ import annotations

import json
import queue
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

_STOP = object()


class PredictionLog:
    def __init__(self, path: Path, log_text: bool) -> None:
        self.path = path
        self.log_text = log_text
        path.parent.mkdir(parents=True, exist_ok=True)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="prediction-log", daemon=True)
        self._writer.start()

    def record(self, request_id: str, text: str, label: str, confidence: float, model_version: str,
               features: dict[str, Any]) -> None:
        self._queue.put((datetime.now(timezone.utc), request_id, text, label, confidence, model_version, features))

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued, then stop the writer."""
        self._queue.put(_STOP)
        self._writer.join(timeout_s)

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

    def _write_loop(self) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            while True:
                items = [self._queue.get()]
                while True:
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = any(item is _STOP for item in items)
                lines = [self._line(*item) for item in items if item is not _STOP]
                if lines:
                    # One write of whole lines in append mode: lines never interleave with another writer's.
                    fh.write("".join(lines))
                    fh.flush()
                if stop:
                    return

"""The prediction log: one JSON line per prediction, the drift monitor's 'current' data."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


class PredictionLog:
    def __init__(self, path: Path, log_text: bool) -> None:
        self.path = path
        self.log_text = log_text
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

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
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        # One write per line in append mode: lines from concurrent requests never interleave.
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)

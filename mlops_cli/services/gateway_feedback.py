"""POST /feedback: labels for predictions the gateway made, checked, then stored durably before the answer.

    {"request_id": "<X-Request-ID of the prediction>", "label": "Positive"}            one label
    {"request_id": "...", "index": 2, "label": "Negative"}                              the 3rd text of a batch
    {"feedback": [{"request_id": ..., "label": ...}, ...]}                             up to [gateway].max_batch

200 {"stored": n} only once every label is on disk (fsync: monitoring/feedback_log.py). A batch with any bad
item stores nothing and names every bad item (monitoring/feedback_check.py): 404 unknown request id, 409
already labelled, 422 not one of the model's classes, 413 too many or too large.
"""

from __future__ import annotations

import threading
from typing import Any

from ..common.log_rotation import log_files
from ..config.settings import Config
from ..data.labels import labels_for
from ..monitoring.feedback_check import MAX_ID_CHARS, FeedbackRejected, PredictionIndex, Served, check_items
from ..monitoring.feedback_log import feedback_log
from .gateway_http import ApiError

ITEM_BYTES = MAX_ID_CHARS + 200  # an item's JSON at its largest, with room for spacing


class FeedbackIntake:
    def __init__(self, config: Config) -> None:
        gw = config.gateway
        self.keep_text = gw.log_text
        log_path = config.path(gw.prediction_log)
        self.index = PredictionIndex.from_log(lambda: log_files(log_path, gw.prediction_log_backups),
                                              gw.feedback_index_size)
        self.log = feedback_log(config)
        self.classes = labels_for(config.data.classes)
        self.max_items = gw.max_batch
        self.max_bytes = gw.max_batch * ITEM_BYTES
        self._lock = threading.Lock()  # the flock is between processes; this keeps our threads in line too
        self.stored = 0

    def served(self, request_id: str, model_version: str, predicted: str, labels: Any, text: str) -> None:
        """A prediction just answered (before its log line is written): it may be labelled from now on."""
        classes = tuple(str(label) for label in labels) if isinstance(labels, (list, tuple)) else ()
        self.index.add(request_id, Served(model_version, predicted, classes, text if self.keep_text else None),
                       own=True)

    def items(self, body: Any) -> list[Any]:
        if isinstance(body, dict) and "feedback" in body:
            items = body["feedback"]
            if not isinstance(items, list) or not items:
                raise ApiError(422, "invalid_input", 'expected {"feedback": [{"request_id": ..., "label": ...}, ...]} '
                                                     "with at least one item")
            if len(items) > self.max_items:
                raise ApiError(413, "batch_too_large", f"{len(items)} labels; at most {self.max_items} per request "
                                                       "(`mlops feedback import FILE.csv` takes more)")
            return items
        if isinstance(body, dict) and "request_id" in body:
            return [body]
        raise ApiError(422, "invalid_input", 'expected {"request_id": "...", "label": "..."} or '
                                             '{"feedback": [{"request_id": ..., "label": ...}, ...]}')

    def store(self, items: list[Any]) -> int:
        """Check and store all of `items` or none (blocking: call it off the event loop)."""
        with self._lock, self.log.locked() as labelled:
            try:
                records = check_items(items, self.index, labelled, self.classes, "gateway")
            except FeedbackRejected as exc:
                details = {"items": [{"item": p.item, "code": p.code, "message": p.message} for p in exc.problems]}
                raise ApiError(exc.status, exc.code, exc.message, details=details) from None
            try:
                self.log.append(records)
            except OSError as exc:
                raise ApiError(503, "feedback_not_stored", f"the feedback log could not be written ({exc}); "
                                                           "nothing was stored, retry later") from None
        self.stored += len(records)
        return len(records)

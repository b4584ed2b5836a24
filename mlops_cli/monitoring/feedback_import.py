"""`mlops feedback import FILE.csv`: labels that arrive in bulk, checked as /feedback checks them.

The CSV has a `label` column and, per row, either a `request_id` (optionally `index`, for a text of a
batch request) naming a logged prediction, or a `text` (a labelled review no prediction named: it joins
the next retraining, not live accuracy). Every row is checked first; one bad row stores nothing, and the
error names every bad row (the first 20, and how many in all). Stored with one fsynced write.

Example::

    import_feedback(config, Path("labels.csv"))   # -> {"stored": 120, "with_prediction": 100, ...}
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from ..common.csv_input import utf8_text
from ..common.errors import DataError, MlopsError
from ..common.log_rotation import log_files
from ..config.settings import Config
from ..data.dataset import labels_for
from .feedback_check import FeedbackRejected, PredictionIndex, check_items
from .feedback_log import feedback_log


def import_feedback(config: Config, path: Path) -> dict[str, Any]:
    rows, lines = _read(path, config.feedback.import_max_bytes)
    items = [_item(row) for row in rows]
    numbers = list(range(1, len(rows) + 1))
    gw = config.gateway
    log_path = config.path(gw.prediction_log)
    index = PredictionIndex.from_log(lambda: log_files(log_path, gw.prediction_log_backups), gw.feedback_index_size)
    log = feedback_log(config)
    with log.locked() as labelled:
        try:
            records = check_items(items, index, labelled, labels_for(config.data.classes), f"import:{path.name}",
                                  numbers=numbers, what="row", texts=True)
        except FeedbackRejected as exc:
            raise DataError(f"{path}: {_with_lines(exc.message, lines)}",
                            hint="fix those rows (or drop them) and import the file again") from None
        try:
            log.append(records)
        except OSError as exc:
            raise MlopsError(f"{log.path}: could not be written ({exc}); nothing was stored") from None
    with_prediction = sum(1 for r in records if r["request_id"])
    return {"file": str(path), "stored": len(records), "with_prediction": with_prediction,
            "text_only": len(records) - with_prediction, "feedback_log": str(log.path)}


def _read(path: Path, max_bytes: int) -> tuple[list[dict[str, str]], list[int]]:
    if not path.is_file():
        raise DataError(f"{path}: {'is a directory, not a file' if path.is_dir() else 'no such file'}")
    size = path.stat().st_size
    if size > max_bytes:
        raise DataError(f"{path}: {size} bytes, more than [feedback].import_max_bytes ({max_bytes})",
                        hint="split the file, or raise [feedback].import_max_bytes")
    text = utf8_text(path, path.read_bytes())
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = reader.fieldnames or []
    if "label" not in columns or not ({"request_id", "text"} & set(columns)):
        raise DataError(f"{path}: expected a label column and a request_id or text column "
                        f"(columns: {', '.join(columns) or 'none'})",
                        hint="header e.g. request_id,label  or  text,label")
    rows, lines = [], []
    try:
        for row in reader:
            if None in row:
                raise DataError(f"{path}: row {len(rows) + 1} (line {reader.line_num}) has more cells than the header")
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise DataError(f"{path}: row {len(rows) + 1} (line {(lines[-1] if lines else 1) + 1}) is not CSV: {exc}") \
            from None
    if not rows:
        raise DataError(f"{path}: no data rows")
    return rows, lines


def _item(row: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {"label": (row.get("label") or "").strip()}
    rid = (row.get("request_id") or "").strip()
    if rid:
        item["request_id"] = rid
        position = (row.get("index") or "").strip()
        if position:
            item["index"] = int(position) if position.isdigit() else position  # a non-number is named as bad
    else:
        item["text"] = row.get("text") or ""
    return item


def _with_lines(message: str, lines: list[int]) -> str:
    """'row 3: ...' -> 'row 3 (line 4): ...': a quoted cell may span lines, so both are named."""
    for number in range(len(lines), 0, -1):
        message = message.replace(f"row {number}:", f"row {number} (line {lines[number - 1]}):")
    return message

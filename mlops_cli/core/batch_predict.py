"""Score a CSV of reviews through any target's predict(), in batches, writing a new CSV atomically."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Callable

from .atomic_file import atomic_writer
from .errors import DataError
from .progress import Reporter


def predict_file(predict: Callable[[list[str]], list[dict[str, Any]]], file: Path, text_col: str, output: Path,
                 batch_size: int, reporter: Reporter) -> dict[str, Any]:
    if not file.is_file():
        raise DataError(f"{file}: no such file")
    try:
        with file.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            columns = list(reader.fieldnames or [])
    except UnicodeDecodeError:
        raise DataError(f"{file}: not valid UTF-8", hint="re-save the file as UTF-8") from None
    if text_col not in columns:
        raise DataError(f"{file}: missing column {text_col!r} (columns: {', '.join(columns)})",
                        hint="name the text column with --text-col")
    for number, row in enumerate(rows, start=1):
        if not (row.get(text_col) or "").strip():
            raise DataError(f"{file}: row {number} (line {number + 1}): empty text in column {text_col!r}")

    reporter.start("predict", f"scoring {file.name}", total=len(rows))
    scored: list[dict[str, Any]] = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        scored.extend(predict([r[text_col] for r in chunk]))
        reporter.advance("predict", len(chunk))
    reporter.finish("predict", f"{len(rows)} rows")

    with atomic_writer(output, newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*columns, "label", "confidence", "model_version"], lineterminator="\n")
        writer.writeheader()
        for row, result in zip(rows, scored):
            writer.writerow({**row, "label": result["label"], "confidence": result["confidence"],
                             "model_version": result.get("model_version", "")})
    return {"rows": len(rows), "output": str(output)}

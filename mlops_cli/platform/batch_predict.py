"""Score a CSV of reviews through any target's predict(), streaming: memory stays flat whatever the size.

Two passes over the file, never the whole file in memory: the first checks every row (so a bad row
stops the run before anything is sent, naming its row number) and counts them; the second reads
batches, keeps two batches in flight (the predictor batches them together while we parse and write)
and writes each scored row at once to a temporary file that replaces the output only when all is done.

Example::

    summary = predict_file(target.predict, Path("reviews.csv"), "text", Path("scored.csv"),
                           batch_size=64, max_chars=5000, long_text="truncate")
    summary["rows"], summary["skipped"], summary["rows_per_s"]
"""

from __future__ import annotations

import csv
import time
from collections import deque
from contextlib import closing
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

from ..common.atomic_file import atomic_writer
from ..common.errors import DataError, GatewayOverloaded, MlopsError
from ..common.output_path import writable_file
from ..common.progress import SILENT, Reporter

PREDICTION_COLUMNS = ("label", "confidence", "model_version")
PREFIX = "predicted_"
LongText = Literal["truncate", "skip", "fail"]
IN_FLIGHT = 2  # one batch on the model while the next is parsed, sent and queued
LONG_ROWS_NAMED = 20  # the summary names this many over-long rows, and counts them all
RETRIES = 6    # a batch shed with 503 + Retry-After is sent again after the time asked for, this often


def default_output(file: Path) -> Path:
    return file.with_name(file.stem + ".scored.csv")


def resolve_output(output: Path | None, file: Path) -> Path:
    """`-o DIR` (an existing directory) means the default file name inside it, as `cp f DIR` does; the
    result is checked before any row is read (common/output_path.py: missing folders are created)."""
    if output is None:
        return writable_file(default_output(file), "output")
    if output.is_dir():
        return writable_file(output / default_output(file).name)
    return writable_file(output)


def prediction_columns(input_columns: list[str]) -> dict[str, str]:
    """Our column names: `label`, `confidence`, `model_version`, unless the input has one of them;
    then all three become `predicted_*` (numbered further if need be), so no input column is lost."""
    taken = set(input_columns)
    if not taken.intersection(PREDICTION_COLUMNS):
        return {c: c for c in PREDICTION_COLUMNS}
    suffix = ""
    n = 1
    while taken.intersection(f"{PREFIX}{c}{suffix}" for c in PREDICTION_COLUMNS):
        n += 1
        suffix = f"_{n}"
    return {c: f"{PREFIX}{c}{suffix}" for c in PREDICTION_COLUMNS}


def _rows(file: Path) -> tuple[list[str], Iterator[dict[str, str]]]:
    fh = file.open(newline="", encoding="utf-8-sig")
    reader = csv.DictReader(fh)
    try:
        columns = list(reader.fieldnames or [])
    except UnicodeDecodeError:
        fh.close()
        raise DataError(f"{file}: not valid UTF-8", hint="re-save the file as UTF-8") from None

    def rows() -> Iterator[dict[str, str]]:
        with fh:
            try:
                yield from reader
            except UnicodeDecodeError:
                raise DataError(f"{file}: not valid UTF-8 (near line {reader.line_num})",
                                hint="re-save the file as UTF-8") from None

    return columns, rows()


def check_file(file: Path, text_col: str, max_chars: int, long_text: LongText) -> tuple[list[str], int, int, list[int]]:
    """First pass: columns, row count, the count of texts over `max_chars` and the first row numbers
    (1-based) of them: never a list that grows with the file."""
    if not file.is_file():
        raise DataError(f"{file}: no such file")
    columns, rows = _rows(file)
    if text_col not in columns:
        rows.close()
        raise DataError(f"{file}: missing column {text_col!r} (columns: {', '.join(columns)})",
                        hint="name the text column with --text-col")
    count, long_count, too_long = 0, 0, []
    for count, row in enumerate(rows, start=1):
        text = row.get(text_col) or ""
        if not text.strip():
            rows.close()
            raise DataError(f"{file}: row {count} (line {count + 1}): empty text in column {text_col!r}")
        if len(text) > max_chars:
            if long_text == "fail":
                rows.close()
                raise DataError(f"{file}: row {count} (line {count + 1}) has {len(text)} characters; the gateway takes "
                                f"at most {max_chars} ([gateway].max_chars)",
                                hint='set [serving].long_text = "truncate" or "skip" to score the rest of the file')
            long_count += 1
            if len(too_long) < LONG_ROWS_NAMED:
                too_long.append(count)
    return columns, count, long_count, too_long


def predict_file(predict: Callable[[list[str]], list[dict[str, Any]]], file: Path, text_col: str, output: Path | None,
                 batch_size: int, reporter: Reporter = SILENT, *, max_chars: int = 5000,
                 long_text: LongText = "truncate") -> dict[str, Any]:
    output = resolve_output(output, file)
    columns, total, long_count, long_rows = check_file(file, text_col, max_chars, long_text)
    ours = prediction_columns(columns)
    if ours["label"] != "label":
        reporter.warn(f"{file.name} already has a label/confidence/model_version column: predictions go to "
                      f"{', '.join(ours.values())}")
    skip = long_text == "skip"

    reporter.start("predict", f"scoring {file.name}", total=total)
    started = time.perf_counter()
    with atomic_writer(output, newline="") as out, ThreadPoolExecutor(IN_FLIGHT) as pool:
        writer = csv.DictWriter(out, fieldnames=[*columns, *ours.values()], lineterminator="\n",
                                extrasaction="ignore")
        writer.writeheader()
        pending: deque[tuple[int, list[dict[str, str]], list[int], Future]] = deque()

        def drain_one() -> None:
            first, chunk, scored_idx, future = pending.popleft()
            try:
                results = future.result()
            except MlopsError as exc:
                kind = MlopsError if isinstance(exc, GatewayOverloaded) else type(exc)
                raise kind(f"{file}: rows {first}-{first + len(chunk) - 1}: {exc.message}", hint=exc.hint) from None
            by_index = dict(zip(scored_idx, results))
            for i, row in enumerate(chunk):
                result = by_index.get(i)
                if result is not None:
                    row[ours["label"]] = result["label"]
                    row[ours["confidence"]] = result["confidence"]
                    row[ours["model_version"]] = result.get("model_version", "")
                writer.writerow(row)
            reporter.advance("predict", len(chunk))

        _, rows = _rows(file)
        with closing(rows):
            for first, chunk in _batches(rows, batch_size):
                scored_idx = [i for i, row in enumerate(chunk) if not (skip and len(row.get(text_col) or "") > max_chars)]
                texts = [chunk[i][text_col][:max_chars] for i in scored_idx]
                if texts:
                    future = pool.submit(_predict_politely, predict, texts)
                else:
                    future = Future()
                    future.set_result([])
                pending.append((first, chunk, scored_idx, future))
                if len(pending) >= IN_FLIGHT:
                    drain_one()
            while pending:
                drain_one()
    elapsed = time.perf_counter() - started
    reporter.finish("predict", f"{total} rows")
    summary: dict[str, Any] = {
        "rows": total, "output": str(output), "columns": list(ours.values()),
        "seconds": round(elapsed, 3), "rows_per_s": round(total / elapsed, 1) if elapsed > 0 else None,
        "long_text": long_text, "skipped": long_count if skip else 0, "truncated": 0 if skip else long_count,
        "long_rows": long_rows,
    }
    return summary


def _predict_politely(predict: Callable[[list[str]], list[dict[str, Any]]], texts: list[str]) -> list[dict[str, Any]]:
    """A shed batch is not a failed file: wait as long as the server asked, then send it again."""
    for attempt in range(RETRIES):
        try:
            return predict(texts)
        except GatewayOverloaded as exc:
            if attempt == RETRIES - 1:
                raise
            time.sleep(min(exc.retry_after_s, 60.0))
    raise AssertionError("unreachable")


def _batches(rows: Iterator[dict[str, str]], size: int) -> Iterator[tuple[int, list[dict[str, str]]]]:
    chunk: list[dict[str, str]] = []
    first = 1
    for number, row in enumerate(rows, start=1):
        if not chunk:
            first = number
        chunk.append(row)
        if len(chunk) == size:
            yield first, chunk
            chunk = []
    if chunk:
        yield first, chunk

"""Score a CSV of reviews through any target's predict(), streaming: memory stays flat whatever the size.

Two passes over the file, never the whole file in memory: the first checks every row (so a bad row
stops the run before anything is sent, naming its row number) and counts them; the second reads
batches, keeps two batches in flight (the predictor batches them together while we parse and write)
and writes each scored row at once to a temporary file that replaces the output only when all is done.

The input may be stdin (`-`) or a pipe, the output stdout (`-`): batch_csv.py spools them.

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
from typing import Any, BinaryIO, Callable, Iterator, Literal

from ..common.atomic_file import atomic_writer
from ..common.errors import DataError, GatewayOverloaded, MlopsError
from ..common.output_path import writable_file
from ..common.progress import SILENT, Reporter
from .batch_csv import STDIO, CsvSource, csv_input, read_rows, scored_output, writes_to_stdout

PREDICTION_COLUMNS = ("label", "confidence", "model_version")
PREFIX = "predicted_"
LongText = Literal["truncate", "skip", "fail"]
IN_FLIGHT = 2  # one batch on the model while the next is parsed, sent and queued
LONG_ROWS_NAMED = 20  # the summary names this many over-long rows, and counts them all
RETRIES = 6    # a batch shed with 503 + Retry-After is sent again after the time asked for, this often


def default_output(file: Path) -> Path:
    return file.with_name(("stdin" if file == STDIO else file.stem) + ".scored.csv")


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


def check_file(source: CsvSource, text_col: str, max_chars: int,
               long_text: LongText) -> tuple[list[str], int, int, list[int]]:
    """First pass: columns, row count, the count of texts over `max_chars` and the first row numbers
    (1-based) of them: never a list that grows with the file."""
    name = source.name
    columns, rows = read_rows(source)
    with closing(rows):
        if text_col not in columns:
            raise DataError(f"{name}: missing column {text_col!r} (columns: {', '.join(columns)})",
                            hint="name the text column with --text-col")
        count, long_count, too_long = 0, 0, []
        for count, line, row in rows:
            text = row.get(text_col) or ""
            if not text.strip():
                raise DataError(f"{name}: row {count} (line {line}): empty text in column {text_col!r}")
            if len(text) > max_chars:
                if long_text == "fail":
                    raise DataError(f"{name}: row {count} (line {line}) has {len(text)} characters; the gateway "
                                    f"takes at most {max_chars} ([gateway].max_chars)",
                                    hint='set [serving].long_text = "truncate" or "skip" to score the rest of the file')
                long_count += 1
                if len(too_long) < LONG_ROWS_NAMED:
                    too_long.append(count)
    return columns, count, long_count, too_long


def predict_file(predict: Callable[[list[str]], list[dict[str, Any]]], file: Path, text_col: str, output: Path | None,
                 batch_size: int, reporter: Reporter = SILENT, *, max_chars: int = 5000,
                 long_text: LongText = "truncate", stdin: BinaryIO | None = None,
                 stdout: BinaryIO | None = None) -> dict[str, Any]:
    """Score `file` (`-`: stdin) into `output` (`-`: stdout; default: FILE.scored.csv, or stdout for a stream)."""
    target = None if writes_to_stdout(file, output) else resolve_output(output, file)
    with csv_input(file, stdin) as source, scored_output(target, stdout) as written:
        summary = _score(predict, source, text_col, written, batch_size, reporter, max_chars, long_text)
    summary["output"] = "stdout" if target is None else str(target)
    return summary


def _score(predict: Callable[[list[str]], list[dict[str, Any]]], source: CsvSource, text_col: str, output: Path,
           batch_size: int, reporter: Reporter, max_chars: int, long_text: LongText) -> dict[str, Any]:
    file = source.name
    columns, total, long_count, long_rows = check_file(source, text_col, max_chars, long_text)
    ours = prediction_columns(columns)
    if ours["label"] != "label":
        reporter.warn(f"{Path(file).name} already has a label/confidence/model_version column: predictions go to "
                      f"{', '.join(ours.values())}")
    skip = long_text == "skip"

    reporter.start("predict", f"scoring {Path(file).name}", total=total)
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

        _, rows = read_rows(source)
        with closing(rows):
            for first, chunk in _batches((row for _, _, row in rows), batch_size):
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
        "rows": total, "columns": list(ours.values()),
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

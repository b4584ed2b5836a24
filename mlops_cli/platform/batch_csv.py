"""The CSV side of `mlops predict --file`: where the rows come from (a file, stdin, a pipe), reading them
with their row number and the line each ends on, so every refusal names where the file went wrong, and
where the scored CSV goes (a file, or stdout).

A row with more fields than the header is refused: the scored file keeps the input's columns, and fields
without a column would silently drop out. Scoring reads its input twice (check everything, then send),
so stdin or a pipe is first copied to a temporary file; that keeps memory flat as a file does.

Example::

    with csv_input(Path("-"), sys.stdin.buffer) as source:      # or Path("reviews.csv")
        columns, rows = read_rows(source)
        with closing(rows):
            for number, line, row in rows:
                row["text"]
"""

from __future__ import annotations

import csv
import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from ..common.csv_input import unreadable_row
from ..common.errors import DataError

STDIO = Path("-")  # `--file -` reads stdin, `-o -` writes stdout
Row = tuple[int, int, dict[str, str]]  # (row number from 1, line it ends on, fields by column)


@dataclass(frozen=True)
class CsvSource:
    path: Path  # a regular file that can be read twice
    name: str   # what messages call it: the file as given, or "stdin"


def is_stream(file: Path) -> bool:
    """stdin (`-`) or something that exists but is not a file or directory: a pipe, /dev/stdin, a FIFO."""
    return file == STDIO or (file.exists() and not file.is_file() and not file.is_dir())


def writes_to_stdout(file: Path, output: Path | None) -> bool:
    """`-o -`, or no -o for input from a stream (there is no file name to put `.scored` on)."""
    return output == STDIO or (output is None and is_stream(file))


@contextmanager
def csv_input(file: Path, stdin: BinaryIO | None = None) -> Iterator[CsvSource]:
    """The input as a regular file: `file` itself, or a stream copied to a temporary file removed afterwards."""
    if not is_stream(file):
        if file.is_dir():
            raise DataError(f"{file}: is a directory, not a CSV file", hint="name a file: --file DIR/reviews.csv")
        if not file.is_file():
            raise DataError(f"{file}: no such file")
        yield CsvSource(file, str(file))
        return
    with tempfile.TemporaryDirectory(prefix="mlops-predict-") as tmp:
        spool = Path(tmp) / "input.csv"
        with spool.open("wb") as out:
            if file == STDIO:
                shutil.copyfileobj(stdin if stdin is not None else sys.stdin.buffer, out)
            else:
                with file.open("rb") as src:
                    shutil.copyfileobj(src, out)
        yield CsvSource(spool, "stdin" if file == STDIO else str(file))


@contextmanager
def scored_output(target: Path | None, stdout: BinaryIO | None = None) -> Iterator[Path]:
    """Where to write the scored CSV: `target`, or (None) a temporary file copied to stdout once it is
    complete, so a run that fails midway prints no half of a CSV."""
    if target is not None:
        yield target
        return
    with tempfile.TemporaryDirectory(prefix="mlops-scored-") as tmp:
        path = Path(tmp) / "scored.csv"
        yield path
        if stdout is None:
            sys.stdout.flush()
            stdout = sys.stdout.buffer
        with path.open("rb") as fh:
            shutil.copyfileobj(fh, stdout)
        stdout.flush()


def read_rows(source: CsvSource) -> tuple[list[str], Iterator[Row]]:
    """The header's columns, and a generator of the data rows (close it when stopping early)."""
    name = source.name
    fh = source.path.open(newline="", encoding="utf-8-sig")
    reader = csv.DictReader(fh)
    try:
        columns = list(reader.fieldnames or [])
    except UnicodeDecodeError:
        fh.close()
        raise DataError(f"{name}: not valid UTF-8", hint="re-save the file as UTF-8") from None
    except csv.Error as exc:
        fh.close()
        raise unreadable_row(name, 0, 1, exc) from None
    if not columns:
        fh.close()
        raise DataError(f"{name}: empty: no header line naming the columns, and no rows",
                        hint="the first line names the columns, e.g. `text`, and each following line is a review")

    def rows() -> Iterator[Row]:
        number, last_line = 0, reader.line_num
        with fh:
            try:
                for number, row in enumerate(reader, start=1):
                    last_line = reader.line_num
                    if None in row:  # DictReader's restkey: fields past the header's columns
                        raise _ragged(name, number, last_line, columns, row[None])  # type: ignore[index]
                    yield number, last_line, row
            except UnicodeDecodeError:
                raise DataError(f"{name}: not valid UTF-8 (near line {reader.line_num})",
                                hint="re-save the file as UTF-8") from None
            except csv.Error as exc:
                # The row that failed starts on the line after the last good one: where its open quote is.
                raise unreadable_row(name, number + 1, last_line + 1, exc) from None

    return columns, rows()


def _ragged(name: str, number: int, line: int, columns: list[str], extra: list[str]) -> DataError:
    """A row with more fields than the header names: scoring it would drop the extra fields from the output."""
    shown = ", ".join(repr(v[:40]) for v in extra[:3]) + (", ..." if len(extra) > 3 else "")
    return DataError(f"{name}: row {number} (line {line}) has {len(columns) + len(extra)} fields, the header names "
                     f"{len(columns)} ({', '.join(columns)}): the extra field(s) {shown} would be lost",
                     hint='quote a field that holds a comma ("great, really"), or name every column in the header')

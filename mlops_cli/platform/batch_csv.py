"""The CSV side of `mlops predict --file`: reading the rows, each with its row number and the line it ends
on, so every refusal names where the file went wrong. A row with more fields than the header is refused:
the scored file keeps the input's columns, and fields without a column would silently drop out.

Example::

    columns, rows = read_rows(Path("reviews.csv"), "reviews.csv")
    with closing(rows):
        for number, line, row in rows:
            row["text"]
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

from ..common.csv_input import unreadable_row
from ..common.errors import DataError

Row = tuple[int, int, dict[str, str]]  # (row number from 1, line it ends on, fields by column)


def read_rows(file: Path, name: str) -> tuple[list[str], Iterator[Row]]:
    """The header's columns, and a generator of the data rows (close it when stopping early)."""
    fh = file.open(newline="", encoding="utf-8-sig")
    reader = csv.DictReader(fh)
    try:
        columns = list(reader.fieldnames or [])
    except UnicodeDecodeError:
        fh.close()
        raise DataError(f"{name}: not valid UTF-8", hint="re-save the file as UTF-8") from None
    except csv.Error as exc:
        fh.close()
        raise unreadable_row(name, 0, 1, exc) from None

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

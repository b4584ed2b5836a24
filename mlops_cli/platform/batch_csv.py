"""The CSV side of `mlops predict --file`: reading the rows, each with its row number and the line it ends
on, so every refusal names where the file went wrong.

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
                    yield number, last_line, row
            except UnicodeDecodeError:
                raise DataError(f"{name}: not valid UTF-8 (near line {reader.line_num})",
                                hint="re-save the file as UTF-8") from None
            except csv.Error as exc:
                # The row that failed starts on the line after the last good one: where its open quote is.
                raise unreadable_row(name, number + 1, last_line + 1, exc) from None

    return columns, rows()

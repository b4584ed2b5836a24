"""Reading a user's CSV: one message for a row the csv module cannot read, naming the row and the line.

Python's csv module refuses a field longer than `csv.field_size_limit()` (131,072 characters unless a
program raises it) with `_csv.Error: field larger than field limit (131072)` (CPython Modules/_csv.c,
parse_add_char). We keep the limit: in a review file a field that long is nearly always a quote that
is never closed, which runs one field on through the rest of the file.
"""

from __future__ import annotations

import csv
from pathlib import Path

from .errors import DataError


def utf8_text(path: Path, data: bytes) -> str:
    """A user's file as text: UTF-8 (a byte-order mark dropped), or one message naming the first bad line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line} is not valid UTF-8 (byte {exc.start})",
                        hint="re-save the file as UTF-8") from None


def unreadable_row(where: str, row: int, line: int, exc: csv.Error) -> DataError:
    """The DataError for a csv.Error raised while reading data row `row` (0: the header), which starts on `line`."""
    detail = str(exc)
    hint = "check that line: quotes must be closed, and a field with a comma or newline in it quoted"
    if "field larger than field limit" in detail:
        detail = f"a field longer than {csv.field_size_limit():,} characters"
        hint = ('most often a quote (") that is never closed, so the field runs on through the following lines: '
                "close it; a review longer than that does not fit the model anyway")
    at = f"row {row} (line {line})" if row else f"the header (line {line})"
    return DataError(f"{where}: {at} is not readable as CSV: {detail}", hint=hint)

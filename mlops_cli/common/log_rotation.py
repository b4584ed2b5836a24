"""Size-based rotation and age-based retention of an append-only JSON-lines file (the prediction log, the
feedback log): past `max_bytes` the file becomes `<name>.1` (older ones shift to `.2` ...), at most
`backups` rotated files are kept and any older than `max_age_s` is deleted.

Example::

    if rotate_if_needed(path, incoming=len(data), max_bytes=50_000_000, backups=5):
        expire(path, backups=5, max_age_s=7 * 86400)
    for file in log_files(path, backups=5):   # oldest first
        ...
"""

from __future__ import annotations

import time
from pathlib import Path


def rotated(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


def rotate_if_needed(path: Path, incoming: int, max_bytes: int, backups: int) -> bool:
    """Shift the files along when `incoming` more bytes would take `path` past max_bytes; True if it did."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if size == 0 or size + incoming <= max_bytes:
        return False
    for n in range(backups, 0, -1):
        older = rotated(path, n)
        if older.exists():
            if n == backups:
                older.unlink()
            else:
                older.replace(rotated(path, n + 1))
    if backups:
        path.replace(rotated(path, 1))
    else:
        path.unlink()
    return True


def expire(path: Path, backups: int, max_age_s: float) -> None:
    """Delete rotated files last written more than max_age_s ago."""
    cutoff = time.time() - max_age_s
    for n in range(1, backups + 1):
        older = rotated(path, n)
        try:
            if older.stat().st_mtime < cutoff:
                older.unlink()
        except OSError:
            continue


def log_files(path: Path, backups: int) -> list[Path]:
    """The file and its rotated files that exist, oldest first: what a reader of the whole log scans."""
    return [p for p in (*(rotated(path, n) for n in range(backups, 0, -1)), path) if p.is_file()]

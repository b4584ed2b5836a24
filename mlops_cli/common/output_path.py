"""Where a command writes its output (`-o`), checked before any work is done.

One rule for every `-o`: folders on the way that do not exist yet are created when the output is written
(as `mkdir -p` would: `atomic_file` does it), and anything that cannot work is refused at once, with one
message and exit 2, never after the work and never as a traceback:

- a part of the path is a file (`/etc/passwd/x.html`);
- the nearest existing folder cannot be written to (`/proc/x.csv`, a read-only mount): found by creating
  and removing a file there, because `os.access` says yes to root for any mode;
- a file output names an existing folder, or a folder output an existing file (`render -o /etc/passwd`).

Example::

    target = writable_file(Path("out/report.html"), "-o")   # out/ may not exist yet
    writable_dir(Path("manifests"), "-o")
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import UsageError


def writable_file(path: Path, what: str = "-o") -> Path:
    """`path` as a file that can be written (created or replaced); UsageError otherwise."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UsageError(f"{what} {path}: is a directory, not a file", hint="name a file, e.g. -o out/report.html")
    _check_parents(path, what)
    return path


def writable_dir(path: Path, what: str = "-o") -> Path:
    """`path` as a folder files can be written into (created if need be); UsageError otherwise."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise UsageError(f"{what} {path}: is a file, not a directory", hint="name a directory, e.g. -o manifests/")
    if path.is_dir():
        _probe(path, path, what)
    else:
        _check_parents(path, what)
    return path


def _check_parents(path: Path, what: str) -> None:
    existing = path.parent
    while not existing.exists():
        if existing == existing.parent:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{what} {path}: {existing} is a file, so nothing can be written below it",
                         hint="choose a path under a directory")
    _probe(existing, path, what)


def _probe(directory: Path, path: Path, what: str) -> None:
    try:
        fd, probe = tempfile.mkstemp(prefix=".mlops-write-check-", dir=directory)
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot write in {directory}: {exc.strerror or exc}",
                         hint="choose a directory you can write to") from None
    os.close(fd)
    os.unlink(probe)

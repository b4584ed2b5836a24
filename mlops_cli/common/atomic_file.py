"""Atomic file writes: a reader sees the old file or the new one, never half of one.

The data goes to a hidden ``.NAME.*.partial`` file beside the target, then ``os.replace`` swaps it in
(atomic on POSIX within one filesystem). On any error, Ctrl-C included, the partial file is removed and
the target is left as it was.

Example::

    write_atomically(path, json.dumps(state))
    with atomic_writer(out_csv, newline="") as fh:
        csv.writer(fh).writerows(rows)
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


@contextmanager
def atomic_writer(path: Path, mode: str = "w", *, newline: str | None = None, perms: int = 0o644) -> Iterator[IO]:
    """A file handle whose content replaces `path` only when the block ends without an error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        binary = "b" in mode
        with os.fdopen(fd, mode, encoding=None if binary else "utf-8", newline=None if binary else newline) as fh:
            yield fh
        os.chmod(tmp, perms)  # mkstemp makes 0600; readers such as the drift service's /report need more
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomically(path: Path, data: str | bytes, *, perms: int = 0o644) -> None:
    """Replace `path` with `data` (text as UTF-8) in one step."""
    with atomic_writer(path, "wb" if isinstance(data, bytes) else "w", perms=perms) as fh:
        fh.write(data)

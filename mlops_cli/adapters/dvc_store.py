"""DVC: version the dataset directory and move it to and from the configured remote.

The remote comes from `[data].remote` in mlops.toml every time (written to `.dvc/config.local`),
so mlops.toml stays the single source of truth.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

from ..common.errors import MlopsError, PreflightError

REMOTE_NAME = "mlops"


@dataclass(frozen=True)
class RemoteSpec:
    url: str
    endpoint_url: str = ""

    @property
    def is_s3(self) -> bool:
        return self.url.startswith("s3://")


class DvcStore:
    def __init__(self, root: Path, remote: RemoteSpec) -> None:
        self.root = root
        self.remote = remote

    # -- repository ---------------------------------------------------------------------------
    def _repo(self) -> Any:
        from dvc.repo import Repo

        _quiet_dvc_logging()

        if not (self.root / ".dvc").is_dir():
            # DVC prints its greeting on stdout, which belongs to --json output.
            with contextlib.redirect_stdout(sys.stderr):
                Repo.init(str(self.root), **_scm_mode(self.root)).close()
        repo = Repo(str(self.root))
        with repo.config.edit("local") as conf:
            conf["core"]["remote"] = REMOTE_NAME
            section = {"url": self.remote.url}
            if self.remote.is_s3 and self.remote.endpoint_url:
                section["endpointurl"] = self.remote.endpoint_url
            conf["remote"][REMOTE_NAME] = section
        return repo

    def track(self, path: Path) -> str:
        """`dvc add` the path; return the md5 recorded in its .dvc file."""
        repo = self._repo()
        with _dvc_says():
            try:
                repo.add(str(path))
            finally:
                repo.close()
        return self.fingerprint(path) or ""

    # -- remote -------------------------------------------------------------------------------
    def push(self, path: Path) -> Transfer:
        """Upload what the remote lacks. DVC counts objects: the files and the directory's own listing."""
        uploaded, said = self._transfer("push", path)
        return Transfer(objects=int(uploaded or 0), files=0, warnings=said)

    def pull(self, path: Path) -> Transfer:
        """Fetch what the cache lacks, then check the files out into the workspace."""
        result, said = self._transfer("pull", path)
        # dvc/repo/pull.py: checkout's result with stats {"fetched": objects, "added"/"modified"/"deleted": files}
        # (dvc/repo/checkout.py counts files, not the directory); its "added" list names the directory once.
        stats = result.get("stats", {}) if isinstance(result, dict) else {}
        return Transfer(objects=int(stats.get("fetched", 0)),
                        files=int(stats.get("added", 0)) + int(stats.get("modified", 0)), warnings=said)

    def _transfer(self, verb: str, path: Path) -> tuple[Any, list[str]]:
        dvc_file = _dvc_file(path)
        if not dvc_file.exists():
            raise MlopsError(f"{dvc_file} does not exist: the dataset is not tracked yet", hint="run `mlops data prepare` first")
        repo = self._repo()
        with _dvc_says() as said:
            try:
                result = getattr(repo, verb)(targets=[str(dvc_file)], remote=REMOTE_NAME)
            except Exception as exc:  # DVC wraps every remote failure in its own exception types
                raise _remote_error(verb, self.remote, exc, said) from None
            finally:
                repo.close()
        return result, said

    def status(self, path: Path) -> dict[str, Any]:
        """Workspace and remote state of the tracked path."""
        dvc_file = _dvc_file(path)
        if not dvc_file.exists():
            return {"tracked": False, "workspace": "not tracked", "remote": "unknown", "md5": None}
        repo = self._repo()
        # DVC's warning that the data is in neither place is what remote_state below says in our words.
        with _dvc_says(), contextlib.ExitStack() as closing:
            closing.callback(repo.close)
            local = repo.status(targets=[str(dvc_file)])
            try:
                cloud = repo.status(targets=[str(dvc_file)], cloud=True, remote=REMOTE_NAME)
                remote_state = "in sync" if not cloud else _summarise_cloud(cloud)
                if not cloud and not self._cached(self.fingerprint(path)):
                    # DVC's cloud status lists what the remote lacks or alone has; data in neither place
                    # gives an empty answer and only a warning ("do not exist neither locally nor on remote").
                    remote_state = ("missing: neither the remote nor the local cache has it (run `mlops data push` "
                                    "where the data was prepared)")
            except Exception as exc:
                remote_state = f"unreachable ({_short(exc)})"
        return {
            "tracked": True,
            "workspace": "in sync" if not local else "modified or missing",
            "remote": remote_state,
            "md5": self.fingerprint(path),
        }

    @staticmethod
    def fingerprint(path: Path) -> str | None:
        return _recorded(path).get("md5")

    @staticmethod
    def tracked_files(path: Path) -> int | None:
        """How many files the tracked directory holds, as its .dvc file records (`nfiles`)."""
        return _recorded(path).get("nfiles")

    def cache_dir(self) -> Path:
        return self.root / ".dvc" / "cache"

    def _cached(self, md5: str | None) -> bool:
        """Is the object in the local cache (DVC 3 layout files/md5/ab/cdef..., or DVC 2's ab/cdef...)?"""
        if not md5:
            return False
        return any((base / md5[:2] / md5[2:]).is_file() for base in (self.cache_dir() / "files" / "md5", self.cache_dir()))


@dataclass(frozen=True)
class Transfer:
    objects: int          # objects DVC moved: each file, and a directory's listing
    files: int            # files written into the workspace (pull)
    warnings: list[str]   # what DVC warned of, one line each


_DVC_LOGGERS = ("dvc", "dvc_objects", "dvc_data")
# Their progress bars switch themselves off when their logger is above ERROR (dvc/progress.py and
# dvc_data/callbacks.py, Tqdm.__init__: `disable = logger.getEffectiveLevel() > level`); on a terminal
# they left blank lines and half-drawn bars around our own output.
_DVC_PROGRESS = ("dvc.progress", "dvc_data.callbacks")


def _quiet_dvc_logging() -> None:
    # `import dvc` binds console handlers to the sys.stdout of that moment; stdout is ours (--json),
    # so DVC's handlers are dropped (dvc.logger.setup gives the same to dvc_objects and dvc_data), and
    # what it logs is collected by _dvc_says instead of reaching the terminal.
    for name in _DVC_LOGGERS:
        log = logging.getLogger(name)
        for handler in list(log.handlers):
            log.removeHandler(handler)
        log.setLevel(logging.WARNING)
        log.propagate = False
    for name in _DVC_PROGRESS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


class _Collector(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        # The first line only: DVC puts lists of hashes, and logger.exception a traceback, after it.
        first = record.getMessage().strip().splitlines()
        if first and first[0] not in self.lines:
            self.lines.append(first[0].rstrip(":"))


@contextlib.contextmanager
def _dvc_says() -> Iterator[list[str]]:
    """What DVC logs meanwhile, as lines for our own messages (nothing of it reaches the terminal)."""
    _quiet_dvc_logging()
    lines: list[str] = []
    handler = _Collector(lines)
    for name in _DVC_LOGGERS:
        logging.getLogger(name).addHandler(handler)
    try:
        yield lines
    finally:
        for name in _DVC_LOGGERS:
            logging.getLogger(name).removeHandler(handler)


def _recorded(path: Path) -> dict[str, Any]:
    """The out recorded in the path's .dvc file ({} when it is not tracked)."""
    dvc_file = _dvc_file(path)
    if not dvc_file.exists():
        return {}
    meta = yaml.safe_load(dvc_file.read_text()) or {}
    return (meta.get("outs") or [{}])[0]


def _dvc_file(path: Path) -> Path:
    return path.with_name(path.name + ".dvc")


def _scm_mode(root: Path) -> dict[str, bool]:
    if (root / ".git").exists():
        return {"no_scm": False}
    inside = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--is-inside-work-tree"], capture_output=True, text=True
    )
    if inside.returncode == 0 and inside.stdout.strip() == "true":
        return {"no_scm": False, "subdir": True}
    return {"no_scm": True}


def _summarise_cloud(cloud: dict[str, Any]) -> str:
    states = {state for entry in cloud.values() for state in (entry.values() if isinstance(entry, dict) else [entry])}
    if "new" in states:
        return "not pushed (run `mlops data push`)"
    if "deleted" in states or "missing" in states:
        return "missing locally (run `mlops data pull`)"
    return ", ".join(sorted(str(s) for s in states)) or "in sync"


def _short(exc: Exception, limit: int = 400) -> str:
    # DVC's messages put the names that matter on the lines after the first ("Checkout failed for
    # following targets:" then the targets), so the whole message is kept, on one line.
    text = " ".join(str(exc).split())
    if not text:
        return type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def _remote_error(verb: str, remote: RemoteSpec, exc: Exception, said: list[str]) -> MlopsError:
    detail = _short(exc)
    cause = exc.__cause__ or exc.__context__
    if cause is not None:
        detail += f" ({_short(cause)})"
    missing = verb == "pull" and type(exc).__name__ == "CheckoutError"
    if said and not missing:  # missing data: DVC's warning says what the hint below says
        detail += f"; DVC: {_short(Exception('; '.join(said)))}"
    if missing:
        # The remote answered but holds no copy (nothing was pushed there): no setting to fix.
        hint = ("the data is neither on the remote nor in this machine's cache (a fresh clone with a local "
                "remote has nothing to pull): run `mlops data prepare` to build it here (deterministic: the same "
                "[data] settings give the same md5), or `mlops data push` where it was prepared")
    elif remote.is_s3:
        hint = "check [data].remote / [data].s3_endpoint_url and that AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are set"
    else:
        hint = "check [data].remote in mlops.toml"
    return PreflightError(f"dvc {verb} to {remote.url} failed: {detail}", hint=hint)

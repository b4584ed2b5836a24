"""Supervised background processes for the local platform.

Each process gets its own session (so stopping it stops its children), a log file, and a record in
`<state_dir>/local/processes.json` with its pid and start time, so a reused pid is never mistaken
for ours.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import psutil

from .atomic_file import write_atomically
from .errors import MlopsError, PreflightError


@dataclass
class ProcessRecord:
    name: str
    pid: int
    port: int
    url: str
    cmd: list[str]
    log: str
    started_at: float
    create_time: float
    meta: dict[str, str] = field(default_factory=dict)

    def alive(self) -> bool:
        try:
            proc = psutil.Process(self.pid)
            return abs(proc.create_time() - self.create_time) < 1.0 and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


class ProcessTable:
    """The recorded processes and deployment history, persisted atomically."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "local"
        self.file = self.dir / "processes.json"

    def load(self) -> dict:
        if not self.file.is_file():
            return {"processes": {}, "deployments": []}
        try:
            data = json.loads(self.file.read_text())
        except (OSError, json.JSONDecodeError):
            raise MlopsError(f"{self.file} is corrupt", hint="stop stray processes by hand, then delete the file") from None
        data["processes"] = {k: ProcessRecord(**v) for k, v in data.get("processes", {}).items()}
        data.setdefault("deployments", [])
        return data

    def save(self, data: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        out = {**data, "processes": {k: asdict(v) for k, v in data["processes"].items()}}
        write_atomically(self.file, json.dumps(out, indent=2))

    def records(self) -> dict[str, ProcessRecord]:
        return self.load()["processes"]

    def put(self, record: ProcessRecord) -> None:
        data = self.load()
        data["processes"][record.name] = record
        self.save(data)

    def drop(self, name: str) -> None:
        data = self.load()
        data["processes"].pop(name, None)
        self.save(data)


def port_owner(port: int, host: str = "127.0.0.1") -> str | None:
    """Who listens on the port: 'name (pid N)', 'unknown process', or None when it is free."""
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return None
        except OSError:
            pass
    try:
        for conn in psutil.net_connections(kind="inet"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                try:
                    return f"{psutil.Process(conn.pid).name()} (pid {conn.pid})"
                except psutil.Error:
                    return f"pid {conn.pid}"
    except psutil.Error:
        pass
    return "unknown process"


def free_port_from(start: int, host: str, taken: set[int]) -> int:
    for port in range(start, start + 200):
        if port not in taken and port_owner(port, host) is None:
            return port
    raise PreflightError(f"no free port in {start}-{start + 199} on {host}", hint="change [local].predictor_port")


def spawn(name: str, cmd: list[str], *, port: int, url: str, log_file: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None, meta: dict[str, str] | None = None) -> ProcessRecord:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )
    return ProcessRecord(
        name=name, pid=proc.pid, port=port, url=url, cmd=cmd, log=str(log_file), started_at=time.time(),
        create_time=psutil.Process(proc.pid).create_time(), meta=meta or {},
    )


def wait_until(record: ProcessRecord, healthy: Callable[[], bool], timeout_s: float,
               on_tick: Callable[[float], None] | None = None) -> None:
    """Block until healthy() is true; fail early, with the log's tail, if the process dies."""
    start = time.monotonic()
    while True:
        if healthy():
            return
        elapsed = time.monotonic() - start
        if not record.alive():
            raise MlopsError(f"{record.name} exited during start-up:\n{tail(Path(record.log), 15)}",
                             hint=f"see the full log: mlops logs {record.name}")
        if elapsed > timeout_s:
            raise MlopsError(f"{record.name} did not become healthy within {timeout_s:.0f} s at {record.url}",
                             hint=f"see its log: mlops logs {record.name}")
        if on_tick:
            on_tick(elapsed)
        time.sleep(0.25)


def stop(record: ProcessRecord, timeout_s: float) -> str:
    """SIGTERM the process group, then SIGKILL after the timeout. Returns how it ended."""
    if not record.alive():
        return "not running"
    try:
        os.killpg(record.pid, signal.SIGTERM)
    except ProcessLookupError:
        return "not running"
    try:
        psutil.Process(record.pid).wait(timeout=timeout_s)
        how = "stopped"
    except psutil.TimeoutExpired:
        how = "killed after timeout"
    except psutil.NoSuchProcess:
        how = "stopped"
    try:
        os.killpg(record.pid, signal.SIGKILL)  # children that ignored SIGTERM
    except (ProcessLookupError, PermissionError):
        pass
    return how


def tail(path: Path, lines: int) -> str:
    if not path.is_file():
        return "(no log yet)"
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 64_000))
        data = fh.read().decode("utf-8", "replace")
    return "\n".join(data.splitlines()[-lines:])


def follow(path: Path, lines: int, keep_going: bool) -> Iterator[str]:
    text = tail(path, lines)
    yield text + "\n"
    if not keep_going:
        return
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        fh.seek(0, os.SEEK_END)
        while True:
            line = fh.readline()
            if line:
                yield line
            else:
                time.sleep(0.3)

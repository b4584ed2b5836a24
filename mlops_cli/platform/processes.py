"""The local platform's recorded components and the helpers around their processes.

`<state_dir>/local/processes.json` records each component (port, URL, command, log, health path,
model version) and the deployment history. supervisord (platform/supervisor.py) owns the processes
themselves; the pid comes from it, never from this file.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import psutil

from ..common.atomic_file import write_atomically
from ..common.errors import MlopsError, PreflightError


@dataclass
class ProcessRecord:
    name: str
    port: int
    url: str
    cmd: list[str]
    log: str
    started_at: float
    meta: dict[str, str] = field(default_factory=dict)


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
        fields = ProcessRecord.__dataclass_fields__
        data["processes"] = {k: ProcessRecord(**{f: x for f, x in v.items() if f in fields})
                             for k, v in data.get("processes", {}).items()}
        data.setdefault("deployments", [])
        return data

    def save(self, data: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        out = {**data, "processes": {k: asdict(v) for k, v in data["processes"].items()}}
        write_atomically(self.file, json.dumps(out, indent=2), perms=0o600)  # records hold the gateway's env

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


def wait_until(record: ProcessRecord, healthy: Callable[[], bool], exited: Callable[[], bool], timeout_s: float) -> None:
    """Block until healthy() is true; fail early, with the log's tail, if the process dies. The time waited
    is the reporter's to show (both reporters show the elapsed time): a per-tick `waited=8s` beside it read
    "working waited=8s, 8.0s elapsed"."""
    start = time.monotonic()
    while True:
        if healthy():
            return
        elapsed = time.monotonic() - start
        if exited():
            raise MlopsError(f"{record.name} exited during start-up:\n{tail(Path(record.log), 15)}",
                             hint=f"see the full log: mlops logs {record.name}")
        if elapsed > timeout_s:
            raise MlopsError(f"{record.name} did not become healthy within {timeout_s:.0f} s at {record.url}",
                             hint=f"see its log: mlops logs {record.name}")
        time.sleep(0.25)


def tail(path: Path, lines: int) -> str:
    if not path.is_file():
        return "(no log yet)"
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 64_000))
        data = fh.read().decode("utf-8", "replace")
    return "\n".join(data.splitlines()[-lines:]) if lines > 0 else ""


def follow(path: Path, lines: int, keep_going: bool) -> Iterator[str]:
    text = tail(path, lines)
    if text:
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

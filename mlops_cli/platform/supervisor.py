"""supervisord as the owner of the local platform's processes.

Why supervisord (README, "Self-healing"): it is the long-proven process owner on a Unix host, a
pure-Python wheel with no service to install, it stops whole process groups (`stopasgroup`), rotates
each component's log, and has an XML-RPC API over a unix socket. Its own retry delay grows by one
second per try and it has no health checks, so it restarts nothing itself here (`autorestart=false`,
`startretries=0`): the healer (`services/healer.py`, itself a supervisord program) decides restarts
with exponential backoff through that API.

The recorded state is the program files under `<state_dir>/local/supervisor/programs/`: after a reboot
or a killed supervisord, starting supervisord on the same files brings back the same components, the
deployed predictor included.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from ..common.atomic_file import write_atomically
from ..common.errors import MlopsError

STATE_ENV = "MLOPS_SUPERVISED_STATE_DIR"  # every supervised process carries it: finds orphans after a crash
HEALER = "healer"
_OUTLIVING: list[subprocess.Popen] = []  # supervisord processes started here, kept until exit


@dataclass(frozen=True)
class Program:
    """One supervised component, as supervisord's `[program:x]` section."""

    name: str
    cmd: list[str]
    log: Path
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    stop_timeout_s: float = 10.0
    autorestart: bool = False  # only the healer itself is restarted by supervisord

    def section(self) -> str:
        lines = [
            f"[program:{self.name}]",
            f"command={_escape(shlex.join(self._argv()))}",
            f"directory={_escape(str(self.cwd))}",
            "autostart=true",
            f"autorestart={'true' if self.autorestart else 'false'}",
            "startsecs=0",
            "startretries=0",
            "stopsignal=TERM",
            f"stopwaitsecs={max(1, round(self.stop_timeout_s))}",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            # expanded twice: by the parser's get and again as a logfile name (supervisor/options.py)
            f"stdout_logfile={_escape(_escape(str(self.log)))}",
            "stdout_logfile_maxbytes=10MB",
            "stdout_logfile_backups=3",
        ]
        return "\n".join(lines) + "\n"

    def _argv(self) -> list[str]:
        """The command, its environment set by env(1) in front of it. supervisord's own `environment=` is
        split by a non-POSIX shlex that strips quote characters from each value (supervisor/datatypes.py
        dict_of_key_value_pairs), so a path or setting holding a quote could not pass; `command=` is
        split by shlex.split, which takes back exactly what shlex.join wrote. env(1) execs the command:
        the same process, pid and process group."""
        if not self.env:
            return list(self.cmd)
        return ["/usr/bin/env", "--", *(f"{k}={v}" for k, v in sorted(self.env.items())), *self.cmd]


def without_environment(section: str) -> list[str]:
    """A program section's lines with its environment left out (the env(1) assignments in front of the
    command, taken as env(1) takes them; an `environment=` line of older records): what tells a changed
    environment, which holds the credentials, from any other change."""
    lines = []
    for line in section.splitlines():
        if line.startswith("environment="):
            continue
        if line.startswith("command="):
            argv = shlex.split(line.removeprefix("command="))
            if argv[:2] == ["/usr/bin/env", "--"]:
                argv = argv[2:]
                while argv and "=" in argv[0]:
                    argv = argv[1:]
                line = "command=" + shlex.join(argv)
        lines.append(line)
    return lines


def _escape(value: str) -> str:
    # supervisord expands %(name)s in every value: a literal % is doubled. Nothing else is special in
    # command= (shlex.split), directory= or stdout_logfile= (taken as they are).
    return value.replace("%", "%%")


class Supervisor:
    """supervisord for one project's state directory: its config, its socket, its XML-RPC API."""

    def __init__(self, state_dir: Path, log_dir: Path) -> None:
        self.state_dir = state_dir.resolve()
        self.dir = self.state_dir / "local" / "supervisor"
        self.programs_dir = self.dir / "programs"
        self.conf = self.dir / "supervisord.conf"
        self.log_dir = log_dir
        self.pidfile = self.dir / "supervisord.pid"
        socket = self.dir / "supervisor.sock"
        if len(str(socket)) > 100:  # AF_UNIX paths are limited to ~108 bytes
            digest = hashlib.sha1(str(self.state_dir).encode()).hexdigest()[:16]
            socket = Path(tempfile.gettempdir()) / f"mlops-supervisor-{digest}.sock"
        self.socket = socket

    # -- the recorded state ----------------------------------------------------------------------
    def write_program(self, program: Program) -> bool:
        """Record the program; True when its file changed."""
        path = self.programs_dir / f"{program.name}.conf"
        text = program.section()
        if path.is_file() and path.read_text() == text:
            return False
        _write_private(path, text)
        return True

    def recorded_section(self, name: str) -> str | None:
        """The program's recorded `[program:x]` section, None when it is not recorded."""
        path = self.programs_dir / f"{name}.conf"
        return path.read_text() if path.is_file() else None

    def forget_program(self, name: str) -> None:
        (self.programs_dir / f"{name}.conf").unlink(missing_ok=True)

    def recorded_programs(self) -> list[str]:
        if not self.programs_dir.is_dir():
            return []
        return sorted(p.stem for p in self.programs_dir.glob("*.conf"))

    def _write_conf(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        text = "\n".join([
            "[unix_http_server]",
            f"file={_escape(str(self.socket))}",
            "chmod=0700",
            "",
            "[supervisord]",
            f"logfile={_escape(str(self.log_dir / 'supervisord.log'))}",
            "logfile_maxbytes=5MB",
            "logfile_backups=2",
            f"pidfile={_escape(str(self.pidfile))}",
            "nodaemon=true",
            "silent=true",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl=unix://{_escape(str(self.socket))}",
            "",
            "[include]",
            f"files={_escape(str(self.programs_dir))}/*.conf",
            "",
        ])
        _write_private(self.conf, text)

    # -- supervisord itself ----------------------------------------------------------------------
    @contextlib.contextmanager
    def rpc(self) -> Iterator[Any]:
        """supervisord's XML-RPC namespace, its connection closed on leaving. Closed by us, not left to the
        garbage collector: a socket finalised unclosed formats a ResourceWarning with its Python `__repr__`,
        and a Ctrl-C handled inside that repr is dropped (sock_finalize in CPython's Modules/socketmodule.c
        saves the pending exception before the warning and restores it after), so `mlops up` went on."""
        from xmlrpc.client import ServerProxy

        from supervisor.xmlrpc import SupervisorTransport

        with ServerProxy("http://127.0.0.1", transport=SupervisorTransport(None, None, f"unix://{self.socket}")) as proxy:
            yield proxy.supervisor

    def running(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            with self.rpc() as rpc:
                return rpc.getState()["statename"] == "RUNNING"
        except (OSError, Exception):  # socket refused, stale file, or supervisord shutting down
            return False

    def start(self, env: dict[str, str], timeout_s: float = 20.0) -> bool:
        """Start supervisord unless it runs; False when it was already running."""
        if self.running():
            return False
        self.kill_orphans()
        self.programs_dir.mkdir(parents=True, exist_ok=True)
        self._write_conf()
        self.socket.unlink(missing_ok=True)
        log = self.log_dir / "supervisord.out"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.conf)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                env={**os.environ, **env, STATE_ENV: str(self.state_dir)}, cwd=self.state_dir.parent,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.running():
                # It outlives this process. Dropping its Popen would run Popen.__del__ (a Python finaliser,
                # "subprocess ... is still running"), where a Ctrl-C is swallowed as unraisable.
                _OUTLIVING.append(proc)
                return True
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        proc.kill()
        from .processes import tail

        raise MlopsError(f"supervisord did not start:\n{tail(self.log_dir / 'supervisord.log', 10)}",
                         hint=f"see {self.log_dir / 'supervisord.out'}")

    def sync(self) -> None:
        """Make supervisord run exactly the recorded programs (supervisorctl's `update`)."""
        with self.rpc() as rpc:
            added, changed, removed = rpc.reloadConfig()[0]
            for name in removed + changed:
                try:
                    rpc.stopProcessGroup(name)
                except Exception:  # already stopped
                    pass
                rpc.removeProcessGroup(name)
            for name in changed + added:
                rpc.addProcessGroup(name)  # autostart=true: starts it

    def info(self) -> dict[str, dict]:
        """supervisord's view of every program, by name; {} when it is not running."""
        if not self.running():
            return {}
        try:
            with self.rpc() as rpc:
                return {i["name"]: i for i in rpc.getAllProcessInfo()}
        except Exception:
            return {}

    def start_program(self, name: str) -> None:
        try:
            with self.rpc() as rpc:
                rpc.startProcess(name, False)
        except Exception as exc:
            if "ALREADY_STARTED" not in str(exc):
                raise

    def remove_program(self, name: str) -> None:
        """Stop the program (group stop, then kill after its timeout) and forget it."""
        self.forget_program(name)
        if not self.running():
            return
        with self.rpc() as rpc:
            try:
                rpc.stopProcessGroup(name)
            except Exception:
                pass
            try:
                rpc.removeProcessGroup(name)
            except Exception:
                pass

    def shutdown(self, timeout_s: float) -> bool:
        """Stop supervisord and with it every component; False when it was not running."""
        pid = self._pid()
        was_running = self.running()
        if was_running:
            try:
                with self.rpc() as rpc:
                    rpc.shutdown()
            except Exception:
                pass
        if pid is not None:
            try:
                psutil.Process(pid).wait(timeout=timeout_s)
            except psutil.TimeoutExpired:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass
        self.kill_orphans()
        self.socket.unlink(missing_ok=True)
        return was_running

    def _pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            proc = psutil.Process(pid)
            return pid if STATE_ENV in proc.environ() and proc.environ()[STATE_ENV] == str(self.state_dir) else None
        except psutil.Error:
            return None

    def orphans(self) -> list[psutil.Process]:
        """Processes started for this state directory whose supervisord is gone (killed, rebooted into)."""
        mine = str(self.state_dir)
        me = os.getpid()
        out = []
        for proc in psutil.process_iter(["pid", "uids"]):
            if proc.pid == me or (proc.info["uids"] and proc.info["uids"].real != os.getuid()):
                continue
            try:
                if proc.environ().get(STATE_ENV) == mine:
                    out.append(proc)
            except psutil.Error:
                continue
        return out

    def kill_orphans(self) -> int:
        procs = self.orphans()
        for proc in procs:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=5)
        return len(procs)


def _write_private(path: Path, text: str) -> None:
    """Atomic, mode 0600: program files hold the gateway's credentials."""
    write_atomically(path, text, perms=0o600)

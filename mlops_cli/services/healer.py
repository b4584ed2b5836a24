"""The healer: restarts local components that exit or keep failing their health check.

    python -m mlops_cli.services.healer      (run by supervisord beside the components)

supervisord owns the processes; this loop reads their state over supervisord's XML-RPC API every
quarter second, probes each component's health URL every `[local].health_interval_s`, and applies
`RestartPolicy` (exponential backoff; `failed` with the log's tail after too many restarts). What it
saw per component goes to `<state_dir>/local/health.json`, which `mlops status` shows.
"""

from __future__ import annotations

import json
import logging
import re
import signal as signals
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from xmlrpc.client import Fault

import httpx
from supervisor.xmlrpc import Faults  # supervisor/xmlrpc.py: SHUTDOWN_STATE = 6, raised by rpcinterface._update

from ..common.atomic_file import write_atomically
from ..common.logging_setup import configure_json_logging
from ..config.loading import load_config
from ..config.settings import Config
from ..platform.processes import ProcessTable, tail
from ..platform.restart_policy import ComponentHealth, RestartPolicy
from ..platform.supervisor import Supervisor

log = logging.getLogger("mlops.healer")
TICK_S = 0.25
EXITED = {"EXITED", "FATAL", "BACKOFF"}


def health_file(state_dir: Path) -> Path:
    return state_dir / "local" / "health.json"


def read_health(state_dir: Path) -> dict[str, ComponentHealth]:
    try:
        data = json.loads(health_file(state_dir).read_text())
    except (OSError, ValueError):
        return {}
    return {name: ComponentHealth.from_dict(h) for name, h in data.items() if isinstance(h, dict)}


def write_health(state_dir: Path, health: dict[str, ComponentHealth]) -> None:
    write_atomically(health_file(state_dir), json.dumps({name: h.as_dict() for name, h in health.items()}, indent=1))


def policy_from(config: Config) -> RestartPolicy:
    local = config.local
    return RestartPolicy(backoff_s=local.restart_backoff_s, backoff_max_s=local.restart_backoff_max_s,
                         max_restarts=local.max_restarts, window_s=local.restart_window_s,
                         health_failures=local.health_failures)


class Healer:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.policy = policy_from(config)
        self.supervisor = Supervisor(config.state_dir, config.path(config.local.log_dir))
        self.table = ProcessTable(config.state_dir)
        self.health = read_health(config.state_dir)
        self.probes: dict[str, Future] = {}
        self.last_probe: dict[str, float] = {}
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="probe")

    def tick(self) -> None:
        with self.supervisor.rpc() as rpc:
            self._tick(rpc)

    def _tick(self, rpc) -> None:
        now = time.time()
        infos = {i["name"]: i for i in rpc.getAllProcessInfo()}
        records = self.table.records()
        before = json.dumps({k: v.as_dict() for k, v in self.health.items()}, sort_keys=True)
        for name in list(self.health):
            if name not in records:
                del self.health[name]  # removed by deploy or down
        for name, record in records.items():
            info = infos.get(name)
            if info is None:
                continue
            health = self.health.setdefault(name, ComponentHealth())
            state = info["statename"]
            exit_key = f"{info['start']}:{info['stop']}"
            if state in EXITED and health.seen_exit != exit_key and health.state not in ("backoff", "failed"):
                health.seen_exit = exit_key
                reason, code = self._exit_reason(rpc, name, info)
                self.policy.on_exit(health, now, reason, code, tail(Path(record.log), 20))
                self.probes.pop(name, None)
                log.warning("component exited", extra={"component": name, "reason": reason,
                                                       "state": health.state, "restart_at": health.next_start_at})
            elif state == "RUNNING":
                self.policy.on_running(health, f"{info['pid']}@{info['start']}")
            if self.policy.due(health, now) and state in EXITED | {"STOPPED"}:
                self.supervisor.start_program(name)
                self.policy.on_restart(health, now)
                log.warning("restarted component", extra={"component": name, "restarts": health.restarts})
            if state == "RUNNING" and health.state in ("starting", "running"):
                self._probe(name, record.url + record.meta.get("health", "/healthz"), health, now, rpc, record.log)
        after = json.dumps({k: v.as_dict() for k, v in self.health.items()}, sort_keys=True)
        if after != before:
            write_health(self.config.state_dir, self.health)

    def _probe(self, name: str, url: str, health: ComponentHealth, now: float, rpc, log_path: str) -> None:
        pending = self.probes.get(name)
        if pending is not None:
            if not pending.done():
                return
            del self.probes[name]
            if self.policy.on_probe(health, pending.result()):
                reason = f"health check failed {health.health_failures} times in a row"
                rpc.stopProcess(name, False)
                self.policy.on_exit(health, now, reason, None, tail(Path(log_path), 20))
                log.warning("component unhealthy", extra={"component": name, "state": health.state})
            return
        if now - self.last_probe.get(name, 0.0) >= self.config.local.health_interval_s:
            self.last_probe[name] = now
            self.probes[name] = self.pool.submit(self._healthy, url)

    def _healthy(self, url: str) -> bool:
        # A fresh connection per probe, closed by us: a kept-alive one would be closed by the server at
        # shutdown and leave its port in TIME_WAIT, so `down` would not free the port at once.
        try:
            return httpx.get(url, timeout=self.config.local.health_timeout_s).status_code == 200
        except httpx.HTTPError:
            return False

    def _exit_reason(self, rpc, name: str, info: dict) -> tuple[str, int | None]:
        """supervisord's words for the exit ("terminated by SIGKILL", "exit status 1") from its log."""
        if info["statename"] in ("FATAL", "BACKOFF"):  # spawn failed (supervisord's "Bad exit code" is not that)
            return f"could not start: {info.get('spawnerr') or 'spawn error'}", None
        try:
            text = rpc.readLog(-20000, 0)
        except Exception:
            text = ""
        found = re.findall(rf"exited: {re.escape(name)} \(([^;)]*)", text)
        reason = found[-1] if found else f"exit status {info['exitstatus']}"
        signal_name = re.match(r"terminated by (SIG\w+)", reason)
        if signal_name and hasattr(signals, signal_name.group(1)):
            return reason, -int(getattr(signals, signal_name.group(1)))
        return reason, int(info["exitstatus"])


def main() -> None:
    config = load_config()
    configure_json_logging("healer", config.observability.log_level)
    healer = Healer(config)
    log.info("healer started", extra={"components": sorted(healer.table.records())})
    while True:
        try:
            healer.tick()
        except Fault as exc:
            if exc.faultCode == Faults.SHUTDOWN_STATE:
                # `mlops down`: supervisord refuses every call while it stops the components, and stops
                # this program last of all or not at all; there is nothing left to heal.
                log.info("supervisord is shutting down; the healer stops")
                return
            log.exception("healer tick failed")
            time.sleep(1.0)
        except (OSError, ConnectionError) as exc:  # supervisord restarting or shutting down
            log.info("supervisord not reachable", extra={"error": str(exc)})
            time.sleep(1.0)
        except Exception:
            log.exception("healer tick failed")
            time.sleep(1.0)
        time.sleep(TICK_S)


if __name__ == "__main__":
    main()

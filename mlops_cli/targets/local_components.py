"""What the local target runs and how: each component as a supervisord program (MLflow, the drift service,
the gateway, optionally Prometheus, the healer and the predictors), started on loopback and waited on
until healthy.

`LocalComponents` is a part of `LocalTarget` (targets/local.py), which gives it `config`, `local`,
`table`, `log_dir`, `credentials` and `_url`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ..common.errors import PreflightError
from ..common.progress import Reporter
from ..platform import processes
from ..platform.supervisor import HEALER, Program, Supervisor, without_environment
from .base import StepResult

PYTHON = sys.executable


@dataclass
class Component:
    name: str
    port: int
    cmd: list[str]
    health_path: str
    start_timeout_s: float = 120.0
    env: dict[str, str] = field(default_factory=dict)


def _port_key(component: str) -> str:
    return "predictor_port" if component.startswith("predictor") else f"{component}_port"


class LocalComponents:
    def _child_env(self) -> dict[str, str]:
        env = {"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        if self.config.file:
            env["MLOPS_CONFIG"] = str(self.config.file)
        return env

    def _platform_components(self, with_prometheus: bool) -> list[Component]:
        from ..adapters.mlflow_tracking import embedded_store

        backend, artifacts = embedded_store(self.config)
        host = self.local.host
        components = [
            Component(
                "mlflow", self.local.mlflow_port,
                [PYTHON, "-m", "mlflow", "server", "--backend-store-uri", backend, "--artifacts-destination",
                 artifacts, "--host", host, "--port", str(self.local.mlflow_port), "--workers", "1"],
                "/health", start_timeout_s=self.local.start_timeout_s,
                # Job execution spawns a Huey consumer that makes start-up ~2.5x slower; we use none.
                env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            ),
            Component(
                "drift", self.local.drift_port,
                [PYTHON, "-m", "mlops_cli.services.drift_service", "--host", host, "--port", str(self.local.drift_port)],
                "/healthz", start_timeout_s=self.local.start_timeout_s,
            ),
            self._gateway_component(),
        ]
        if self.config.loop.schedule:  # the closed loop as a supervised periodic job (loop/service.py)
            components.append(Component(
                "loop", self.local.loop_port,
                [PYTHON, "-m", "mlops_cli.loop.service", "--host", host, "--port", str(self.local.loop_port)],
                "/healthz", start_timeout_s=self.local.start_timeout_s))
        if with_prometheus:
            from ..platform.prometheus_local import prometheus_command

            config_path = self.config.state_dir / "local" / "prometheus.yml"
            components.append(Component("prometheus", self.local.prometheus_port,
                                         prometheus_command(self.config, config_path, self._predictor_targets()),
                                         "/-/ready", start_timeout_s=self.local.start_timeout_s))
        return components

    def _gateway_component(self) -> Component:
        # The upstream comes from a file `deploy` rewrites, so a restarted gateway serves the deployed
        # version and the gateway's program (and so supervisord's record of it) never changes per deploy.
        cmd = [PYTHON, "-m", "mlops_cli.services.gateway", "--host", self.local.host, "--port",
               str(self.local.gateway_port), "--upstream-file", str(self.upstream_file)]
        env = {}
        creds = self.credentials(create=self.config.gateway.auth)
        if creds:
            env = {"MLOPS_GATEWAY_USER": creds[0], "MLOPS_GATEWAY_PASSWORD": creds[1]}
        admin = self.admin_credentials(create=True)  # /admin is never open, even with [gateway].auth off
        env["MLOPS_GATEWAY_ADMIN_PASSWORD"] = admin[1]
        return Component("gateway", self.local.gateway_port, cmd, "/healthz", env=env,
                         start_timeout_s=self.local.start_timeout_s)

    @property
    def upstream_file(self) -> Path:
        return self.config.state_dir / "local" / "upstream.json"

    def _supervisor(self) -> Supervisor:
        return Supervisor(self.config.state_dir, self.log_dir)

    def _program(self, component: Component) -> Program:
        return Program(component.name, component.cmd, self.log_dir / f"{component.name}.log", self.config.root,
                       env={**self._child_env(), **component.env}, stop_timeout_s=self.local.stop_timeout_s)

    def _healer_program(self) -> Program:
        return Program(HEALER, [PYTHON, "-m", "mlops_cli.services.healer"], self.log_dir / "healer.log",
                       self.config.root, env=self._child_env(), stop_timeout_s=5.0, autorestart=True)

    def _record(self, component: Component, meta: dict[str, str] | None = None) -> processes.ProcessRecord:
        return processes.ProcessRecord(
            name=component.name, port=component.port, url=self._url(component.port), cmd=component.cmd,
            log=str(self.log_dir / f"{component.name}.log"), started_at=time.time(),
            meta={"health": component.health_path, **(meta or {})})

    def _healthy(self, url: str, path: str) -> bool:
        try:
            return httpx.get(url + path, timeout=self.local.health_timeout_s).status_code == 200
        except httpx.HTTPError:
            return False

    def _recorded_predictors(self) -> list[Component]:
        """Predictors recorded as deployed: brought back by `up` after a reboot or a killed supervisor."""
        out = []
        for record in self.table.records().values():
            if record.name.startswith("predictor"):
                out.append(Component(record.name, record.port, record.cmd, record.meta.get("health", "/"),
                                     start_timeout_s=self.config.serving.ready_timeout_s))
        return out

    def _converge(self, components: list[Component], reporter: Reporter) -> list[StepResult]:
        """Make supervisord run these components (and the healer); wait until each is healthy.

        Every port is checked before anything starts. On failure or Ctrl-C, what this call started is
        stopped and forgotten again; what already ran keeps running.
        """
        sup = self._supervisor()
        if not sup.running():
            sup.kill_orphans()  # a killed supervisord leaves its children holding the ports
        info = sup.info()
        live = {n for n, i in info.items() if i["statename"] in ("RUNNING", "STARTING")}
        records = self.table.records()
        # A running component whose port or credentials changed in the config: supervisord restarts it
        # when it rereads the program (sync below), so it is restarted, recorded and waited on here too.
        changed = {c.name: why for c in components if c.name in live and (why := self._change(sup, records.get(c.name), c))}
        needed = [c for c in components if c.name not in live or c.name in changed]
        same_port = {c.name for c in needed if c.name in live and records[c.name].port == c.port}
        taken = [(c, owner) for c in needed
                 if c.name not in same_port and (owner := processes.port_owner(c.port, self.local.host)) is not None]
        if taken:
            raise PreflightError(
                "; ".join(f"port {c.port} for {c.name} is taken by {owner}" for c, owner in taken),
                hint="stop that process or set " + ", ".join(f"[local].{_port_key(c.name)}" for c, _ in taken)
                     + " in mlops.toml; nothing was started")
        started_here: list[str] = []
        supervisor_was_running = sup.running()
        try:
            for component in components:
                if component.name not in self.table.records() or component in needed:
                    self.table.put(self._record(component, self._meta_of(component.name)))
                sup.write_program(self._program(component))
                if component in needed and component.name not in changed:
                    started_here.append(component.name)
            sup.write_program(self._healer_program())
            if not sup.start(self._child_env()):
                sup.sync()
            for component in needed:
                if sup.info().get(component.name, {}).get("statename") not in ("RUNNING", "STARTING"):
                    sup.start_program(component.name)
            for component in needed:
                self._wait_healthy(sup, component, reporter)
        except BaseException:
            for name in started_here:
                if not name.startswith("predictor"):
                    sup.remove_program(name)
                    self.table.drop(name)
            if not supervisor_was_running and not self.table.records():
                sup.shutdown(self.local.stop_timeout_s)
                sup.forget_program(HEALER)
            raise
        return [StepResult(c.name, f"restarted ({changed[c.name]})" if c.name in changed
                           else "started" if c in needed else "already running", self._url(c.port))
                for c in components]

    def _change(self, sup: Supervisor, record: processes.ProcessRecord | None, component: Component) -> str | None:
        """Why the running component's recorded program differs from what the config asks now, if it does."""
        if record is not None and record.port != component.port:
            return "port changed"
        before = sup.recorded_section(component.name)
        after = self._program(component).section()
        if before is None or before == after:
            return None
        if without_environment(before) == without_environment(after):
            return "password changed"  # the environment holds the credentials (and nothing else that varies)
        return "settings changed"

    def _meta_of(self, name: str) -> dict[str, str]:
        record = self.table.records().get(name)
        return {k: v for k, v in (record.meta if record else {}).items() if k != "health"}

    def _wait_healthy(self, sup: Supervisor, component: Component, reporter: Reporter) -> None:
        url = self._url(component.port)
        record = self._record(component)
        reporter.start(component.name, f"starting {component.name}", total=None)
        processes.wait_until(
            record, lambda: self._healthy(url, component.health_path),
            lambda: sup.info().get(component.name, {}).get("statename") in ("EXITED", "FATAL", "BACKOFF"),
            component.start_timeout_s)
        reporter.finish(component.name, f"listening on {url}")

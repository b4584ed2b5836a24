"""The `local` target: the whole platform as supervised processes on loopback.

Components: MLflow server (on the same store the embedded mode uses), the drift service, the
gateway, and one predictor per deployed model version (two, briefly, while `deploy` switches).
How each runs is in local_components.py; `deploy` and `predict` in local_serving.py.
"""

from __future__ import annotations

import os
import secrets as pysecrets
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx

from ..common.errors import MlopsError, NotFoundError, UsageError
from ..common.progress import Reporter
from ..common.secrets import Secrets
from ..config.settings import Config
from ..platform import processes
from ..platform.purge import purge_plan
from ..platform.supervisor import HEALER
from .base import ComponentStatus, Confirm, DeployOptions, DownOptions, Outcome, StepResult, UpOptions
from .local_components import LocalComponents
from .local_serving import LocalServing


class LocalTarget(LocalComponents, LocalServing):
    name = "local"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.local = config.local
        self.table = processes.ProcessTable(config.state_dir)
        self.log_dir = config.path(config.local.log_dir)
        self._http: httpx.Client | None = None
        self._http_lock = threading.Lock()

    @property
    def password_file(self) -> Path:
        return self.config.state_dir / "secrets" / "gateway-password"

    @property
    def admin_password_file(self) -> Path:
        """The gateway's admin password (`/admin/*`: switching the predictor), apart from `/predict`'s."""
        return self.config.state_dir / "secrets" / "gateway-admin-password"

    def credentials(self, create: bool = False) -> tuple[str, str] | None:
        """(user, password) for /predict: from the environment, else the generated file (made on `up`)."""
        env = Secrets.from_env()
        user = env.gateway_user or self.config.gateway.user
        password = env.gateway_password or _generated_secret(self.password_file, create)
        return (user, password) if password else None

    def admin_credentials(self, create: bool = False) -> tuple[str, str] | None:
        """(user, password) for the gateway's /admin routes: MLOPS_GATEWAY_ADMIN_PASSWORD, else the generated
        file (made on `up`, mode 0600, never printed: only `mlops deploy` uses it)."""
        env = Secrets.from_env()
        user = env.gateway_user or self.config.gateway.user
        password = env.gateway_admin_password or _generated_secret(self.admin_password_file, create)
        return (user, password) if password else None

    def _url(self, port: int) -> str:
        return f"http://{self.local.host}:{port}"

    # -- components ----------------------------------------------------------------------------
    # -- Target interface ----------------------------------------------------------------------
    def up(self, options: UpOptions, reporter: Reporter, confirm: Confirm) -> Outcome:
        if options.dry_run or options.preview:
            raise UsageError("--dry-run/--preview apply to the kubernetes and eks targets",
                            hint="`mlops up` on local only starts what is missing; just run it")
        outcome = Outcome()
        components = self._platform_components(options.with_prometheus) + self._recorded_predictors()
        outcome.steps = self._converge(components, reporter)
        outcome.steps += self._restore_deployment(reporter)
        if all(s.action == "already running" for s in outcome.steps):
            outcome.info["message"] = "everything is already up"
        outcome.info["mlflow_ui"] = self._url(self.local.mlflow_port)
        outcome.info["gateway"] = self._url(self.local.gateway_port)
        if self.config.gateway.auth and not Secrets.from_env().gateway_password:
            outcome.info["gateway_password"] = f"cat {self.password_file}"
        return outcome

    def _restore_deployment(self, reporter: Reporter) -> list[StepResult]:
        """After `down` (which stops the predictors but keeps the deployment history), serve the version
        deployed last again, so `down` then `up` gives back the platform as it was."""
        data = self.table.load()
        last = self._current_deployment(data)
        if last is None or any(name.startswith("predictor") for name in data["processes"]):
            return []
        version = last["version"]
        try:
            return self.deploy(DeployOptions(version=version), reporter).steps
        except MlopsError as exc:
            first_line = exc.message.splitlines()[0]
            reporter.warn(f"version {version}, deployed before `mlops down`, could not be served again: {first_line}")
            return [StepResult(f"predictor-v{version}", "not restored",
                               f"{first_line}; run `mlops deploy --version N` (see `mlops models list`)")]

    def down(self, options: DownOptions, reporter: Reporter, confirm: Confirm) -> Outcome:
        plan = purge_plan(self.config) if options.purge else None
        if plan is not None and not options.yes:
            if not confirm(plan.question()):
                raise MlopsError("purge cancelled; nothing was stopped or deleted", hint="add --yes to skip the question")
        outcome = Outcome()
        records = self.table.records()
        sup = self._supervisor()
        # The supervisor first: once it is gone nothing can bring a component back.
        reporter.start("supervisor", "stopping the supervisor and every component")
        was_running = sup.shutdown(self.local.stop_timeout_s + 5)
        reporter.finish("supervisor", "stopped" if was_running else "not running")
        for name in sorted(records, key=lambda n: (not n.startswith("predictor"), n != "gateway", n)):
            sup.forget_program(name)
            self.table.drop(name)
            outcome.steps.append(StepResult(name, "stopped" if was_running else "not running", records[name].url))
        sup.forget_program(HEALER)
        data = self.table.load()
        if data.get("canary"):  # its predictor is stopped: `up` serves the version deployed before it
            data["canary"] = None
            self.table.save(data)
        for path in (self.upstream_file, self.config.state_dir / "local" / "health.json"):
            path.unlink(missing_ok=True)
        if not records:
            outcome.info["message"] = "nothing was running"
        if plan is not None:
            for path, action in plan.run():
                outcome.steps.append(StepResult(str(path), action))
        else:
            outcome.info["kept"] = f"data in {self.config.state_dir} (use --purge to delete)"
        return outcome

    def status(self) -> list[ComponentStatus]:
        from ..services.healer import read_health

        data = self.table.load()
        current = self._current_deployment(data)
        sup = self._supervisor()
        info = sup.info()
        supervised = bool(info)
        health = read_health(self.config.state_dir)
        # A killed supervisord leaves its components serving, unsupervised: probe them, do not guess.
        orphans = {} if supervised or not data["processes"] else _listeners(sup.orphans())
        out = []
        for name, record in data["processes"].items():
            proc = info.get(name, {})
            if not supervised and record.port in orphans:
                pid, started = orphans[record.port]
                proc = {"statename": "RUNNING", "pid": pid, "start": started}
            alive = proc.get("statename") == "RUNNING"
            healthy = alive and self._healthy(record.url, record.meta.get("health", "/healthz"))
            version = record.meta.get("version", "")
            traffic = None
            h = health.get(name)
            detail, log_tail = "", ""
            if name == "gateway":
                ready = alive and self._healthy(record.url, "/readyz")
                detail = "predictor ready" if ready else "no ready predictor behind it"
                version = current["version"] if current else ""
                canary = self._running_canary(data)
                if canary:
                    traffic = {canary["baseline_version"]: 100 - canary["percent"], canary["version"]: canary["percent"]}
                    detail += f"; canary: {canary['percent']}% to version {canary['version']}"
                elif current:
                    traffic = {current["version"]: 100}
            if not supervised and alive:
                detail = (f"{'serving' if healthy else 'running, not healthy'}, unsupervised: supervisord is gone, "
                          "so nothing restarts it (`mlops up` brings it back under supervision)")
            elif not supervised:
                detail = "not running: the supervisor is not running (run `mlops up`)"
            elif h is not None and h.state == "failed":
                detail, log_tail = f"failed: {h.failed_reason}", h.log_tail
            elif h is not None and h.state == "backoff":
                detail = f"restarting in {max(0.0, (h.next_start_at or 0) - time.time()):.1f} s after: {h.last_exit}"
            elif not alive:
                detail = f"not running ({proc.get('statename', 'unknown').lower()})"
            out.append(ComponentStatus(
                component=name, url=record.url, pid=proc.get("pid") or None if alive else None, healthy=healthy,
                version=version, uptime_s=(time.time() - proc["start"]) if alive and proc.get("start") else None,
                detail=detail, state=(h.state if h else ("running" if alive else "stopped")),
                restarts=h.restarts if h else 0, last_exit=h.last_exit if h else "",
                last_exit_code=h.last_exit_code if h else None,
                last_restart_at=h.last_restart_at if h else None,
                log_tail=log_tail, traffic=traffic,
            ))
        if out and not supervised:
            out.insert(0, ComponentStatus(
                component="supervisor", healthy=False, state="stopped",
                detail="supervisord is not running (killed, or the machine restarted): no component is restarted "
                       "if it fails; `mlops up` starts it again and brings every component back under it"))
        return out

    def logs(self, component: str, *, follow: bool = False, lines: int = 50) -> Iterator[str]:
        path = self.log_dir / f"{component}.log"
        if not path.is_file():
            known = sorted(p.stem for p in self.log_dir.glob("*.log")) if self.log_dir.is_dir() else []
            raise NotFoundError(f"no log for {component!r}", hint=f"components with logs: {', '.join(known) or 'none yet (run mlops up)'}")
        return processes.follow(path, lines, follow)

    def checks(self) -> list:
        from ..common.check import Check

        out = []
        live = {n for n, i in self._supervisor().info().items() if i["statename"] == "RUNNING"}
        for name, port in (("mlflow", self.local.mlflow_port), ("gateway", self.local.gateway_port),
                           ("drift", self.local.drift_port)):
            ours = name in live
            owner = None if ours else processes.port_owner(port, self.local.host)
            detail = "ours" if ours else (f"taken by {owner}" if owner else "free")
            out.append(Check(f"port {port} ({name})", owner is None, detail,
                             "" if owner is None else f"stop {owner} or change [local].{name}_port", True))
        return out


def _generated_secret(path: Path, create: bool) -> str | None:
    """The password in `path`; with `create`, a new random one written there first (mode 0600, never
    replacing a file another process made meanwhile)."""
    if path.is_file():
        return path.read_text().strip()
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    password = pysecrets.token_urlsafe(18)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    return password


def _listeners(procs: list) -> dict[int, tuple[int, float]]:
    """{port: (pid, start time)} of the TCP ports these processes listen on."""
    import psutil

    out = {}
    for proc in sorted(procs, key=lambda p: p.pid):
        try:
            # psutil 6 renamed Process.connections to net_connections; the pinned 5.9 has only the old name.
            connections = getattr(proc, "net_connections", None) or proc.connections
            for conn in connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr:
                    out.setdefault(conn.laddr.port, (proc.pid, proc.create_time()))  # a server before its workers
        except psutil.Error:
            continue
    return out

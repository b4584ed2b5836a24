"""The `local` target: the whole platform as supervised processes on loopback.

Components: MLflow server (on the same store the embedded mode uses), the drift service, the
gateway, and one predictor per deployed model version (two, briefly, while `deploy` switches).
"""

from __future__ import annotations

import os
import secrets as pysecrets
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx

from ..core import processes
from ..core.config import Config
from ..core.errors import MlopsError, NotFoundError, PreflightError
from ..core.progress import Reporter
from ..core.secrets import Secrets
from .base import ComponentStatus, Confirm, DeployOptions, DownOptions, Outcome, StepResult, UpOptions

PYTHON = sys.executable


@dataclass
class Component:
    name: str
    port: int
    cmd: list[str]
    health_path: str
    start_timeout_s: float = 60.0
    env: dict[str, str] = field(default_factory=dict)


class LocalTarget:
    name = "local"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.local = config.local
        self.table = processes.ProcessTable(config.state_dir)
        self.log_dir = config.path(config.local.log_dir)

    # -- credentials ---------------------------------------------------------------------------
    @property
    def password_file(self) -> Path:
        return self.config.state_dir / "secrets" / "gateway-password"

    def credentials(self, create: bool = False) -> tuple[str, str] | None:
        """(user, password): from the environment, else the generated file (made on `up`)."""
        env = Secrets.from_env()
        user = env.gateway_user or self.config.gateway.user
        if env.gateway_password:
            return user, env.gateway_password
        if self.password_file.is_file():
            return user, self.password_file.read_text().strip()
        if not create:
            return None
        self.password_file.parent.mkdir(parents=True, exist_ok=True)
        password = pysecrets.token_urlsafe(18)
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
        return user, password

    def _url(self, port: int) -> str:
        return f"http://{self.local.host}:{port}"

    # -- components ----------------------------------------------------------------------------
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
                "/health", start_timeout_s=120.0,
                # Job execution spawns a Huey consumer that makes start-up ~2.5x slower; we use none.
                env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            ),
            Component(
                "drift", self.local.drift_port,
                [PYTHON, "-m", "mlops_cli.services.drift_service", "--host", host, "--port", str(self.local.drift_port)],
                "/healthz",
            ),
            self._gateway_component(),
        ]
        if with_prometheus:
            from ..core.prometheus_local import prometheus_command

            config_path = self.config.state_dir / "local" / "prometheus.yml"
            components.append(Component("prometheus", self.local.prometheus_port,
                                         prometheus_command(self.config, config_path), "/-/ready"))
        return components

    def _gateway_component(self) -> Component:
        cmd = [PYTHON, "-m", "mlops_cli.services.gateway", "--host", self.local.host, "--port", str(self.local.gateway_port)]
        current = self._current_deployment()
        if current:
            predictor = self.table.records().get(current["component"])
            if predictor and predictor.alive():
                cmd += ["--predictor-url", predictor.url, "--model-version", current["version"]]
        env = {}
        creds = self.credentials(create=self.config.gateway.auth)
        if creds:
            env = {"MLOPS_GATEWAY_USER": creds[0], "MLOPS_GATEWAY_PASSWORD": creds[1]}
        return Component("gateway", self.local.gateway_port, cmd, "/healthz", env=env)

    def _healthy(self, url: str, path: str) -> bool:
        try:
            return httpx.get(url + path, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _ensure(self, component: Component, reporter: Reporter) -> StepResult:
        """Start the component unless our recorded process already serves it."""
        record = self.table.records().get(component.name)
        url = self._url(component.port)
        if record and record.alive() and record.port == component.port:
            return StepResult(component.name, "already running", url)
        owner = processes.port_owner(component.port, self.local.host)
        if owner is not None:
            raise PreflightError(
                f"port {component.port} for {component.name} is taken by {owner}",
                hint=f"stop that process or set [local].{component.name}_port in mlops.toml",
            )
        reporter.start(component.name, f"starting {component.name}", total=None)
        env = {**self._child_env(), **component.env}
        record = processes.spawn(component.name, component.cmd, port=component.port, url=url,
                                 log_file=self.log_dir / f"{component.name}.log", env=env, cwd=self.config.root)
        self.table.put(record)
        try:
            processes.wait_until(record, lambda: self._healthy(url, component.health_path), component.start_timeout_s,
                                 on_tick=lambda s: reporter.update(component.name, waited=f"{s:.0f}s"))
        except BaseException:
            processes.stop(record, self.local.stop_timeout_s)
            self.table.drop(component.name)
            raise
        reporter.finish(component.name, f"listening on {url}")
        return StepResult(component.name, "started", url)

    # -- Target interface ----------------------------------------------------------------------
    def up(self, options: UpOptions, reporter: Reporter, confirm: Confirm) -> Outcome:
        if options.dry_run or options.preview:
            raise MlopsError("--dry-run/--preview apply to the kubernetes and eks targets",
                             hint="`mlops up` on local only starts what is missing; just run it")
        outcome = Outcome()
        started: list[str] = []
        try:
            for component in self._platform_components(options.with_prometheus):
                step = self._ensure(component, reporter)
                if step.action == "started":
                    started.append(component.name)
                outcome.steps.append(step)
        except BaseException:
            # Nothing half-started: stop what this run started, keep what was already up.
            records = self.table.records()
            for name in reversed(started):
                processes.stop(records[name], self.local.stop_timeout_s)
                self.table.drop(name)
            raise
        if all(s.action == "already running" for s in outcome.steps):
            outcome.info["message"] = "everything is already up"
        outcome.info["mlflow_ui"] = self._url(self.local.mlflow_port)
        outcome.info["gateway"] = self._url(self.local.gateway_port)
        if self.config.gateway.auth and not Secrets.from_env().gateway_password:
            outcome.info["gateway_password"] = f"cat {self.password_file}"
        return outcome

    def down(self, options: DownOptions, reporter: Reporter, confirm: Confirm) -> Outcome:
        if options.purge and not options.yes:
            if not confirm(f"--purge deletes {self.config.state_dir} (runs, registry, models, logs) and the DVC cache."):
                raise MlopsError("purge cancelled; nothing was stopped or deleted", hint="add --yes to skip the question")
        outcome = Outcome()
        records = self.table.records()
        order = sorted(records, key=lambda n: (not n.startswith("predictor"), n != "gateway", n))
        for name in order:
            reporter.start(name, f"stopping {name}")
            how = processes.stop(records[name], self.local.stop_timeout_s)
            self.table.drop(name)
            reporter.finish(name, how)
            outcome.steps.append(StepResult(name, how, records[name].url))
        if not records:
            outcome.info["message"] = "nothing was running"
        if options.purge:
            for path in (self.config.state_dir, self.config.root / ".dvc" / "cache"):
                if path.exists():
                    shutil.rmtree(path)
                    outcome.steps.append(StepResult(str(path), "deleted"))
        else:
            outcome.info["kept"] = f"data in {self.config.state_dir} (use --purge to delete)"
        return outcome

    def status(self) -> list[ComponentStatus]:
        data = self.table.load()
        current = self._current_deployment(data)
        out = []
        for name, record in data["processes"].items():
            alive = record.alive()
            path = {"mlflow": "/health", "drift": "/healthz", "gateway": "/readyz", "prometheus": "/-/ready"}.get(
                name, f"/v1/models/{self.config.serving.model_name}")
            healthy = alive and self._healthy(record.url, path)
            version = record.meta.get("version", "")
            detail = ""
            if name == "gateway":
                detail = "predictor ready" if healthy else "no ready predictor behind it"
                healthy = alive and self._healthy(record.url, "/healthz")
                version = current["version"] if current else ""
            out.append(ComponentStatus(
                component=name, url=record.url, pid=record.pid if alive else None, healthy=healthy,
                version=version, uptime_s=(time.time() - record.started_at) if alive else None,
                detail=detail if alive else "not running (stale record)",
            ))
        return out

    def _current_deployment(self, data: dict | None = None) -> dict | None:
        deployments = (data or self.table.load())["deployments"]
        return deployments[-1] if deployments else None

    def deploy(self, options: DeployOptions, reporter: Reporter) -> Outcome:
        if options.canary is not None or options.promote:
            raise MlopsError("--canary/--promote need a cluster target (kubernetes or eks)",
                             hint="locally, `mlops deploy --version N` switches all traffic without dropping requests")
        from ..core import registry

        data = self.table.load()
        if options.rollback:
            history = data["deployments"]
            if len(history) < 2:
                raise NotFoundError("there is no previous deployment to roll back to")
            version = history[-2]["version"]
        else:
            version = options.version
        reporter.start("resolve", "resolving model version")
        ref = registry.resolve_version(self.config, version=version,
                                       alias=None if version else (options.alias or self.config.registry.champion_alias))
        model_dir = registry.local_model_dir(self.config, ref)
        reporter.finish("resolve", f"version {ref.version}")
        from ..core.serving_runtime import served_model_dir, predictor_args

        model_dir = served_model_dir(self.config, ref, model_dir, reporter)

        outcome = Outcome()
        outcome.steps.append(self._ensure(self._gateway_component(), reporter))
        taken = {r.port for r in data["processes"].values()}
        port = processes.free_port_from(self.local.predictor_port, self.local.host, taken)
        name = f"predictor-v{ref.version}"
        previous = self._current_deployment(data)
        old_record = data["processes"].get(previous["component"]) if previous else None
        if old_record is not None and old_record.name == name:
            name = f"{name}-{port}"  # redeploying the serving version: a fresh process beside it
        url = self._url(port)
        cmd = [PYTHON, "-m", "models.predictor", "--model-dir", str(model_dir), "--model-name",
               self.config.serving.model_name, "--version", ref.version, "--http-port", str(port),
               "--host", self.local.host, *predictor_args(self.config)]
        component = Component(name, port, cmd, f"/v1/models/{self.config.serving.model_name}",
                              start_timeout_s=self.config.serving.ready_timeout_s)
        record = processes.spawn(name, cmd, port=port, url=url, log_file=self.log_dir / f"{name}.log",
                                 env=self._child_env(), cwd=self.config.root, meta={"version": ref.version})
        self.table.put(record)
        reporter.start(name, f"starting predictor v{ref.version}")
        try:
            processes.wait_until(record, lambda: self._predictor_ready(url), component.start_timeout_s,
                                 on_tick=lambda s: reporter.update(name, waited=f"{s:.0f}s"))
        except BaseException:
            processes.stop(record, self.local.stop_timeout_s)
            self.table.drop(name)
            raise
        reporter.finish(name, f"ready on {url}")
        outcome.steps.append(StepResult(name, "started", url))

        self._switch_gateway(url, ref.version)
        outcome.steps.append(StepResult("gateway", "switched", f"to version {ref.version}"))
        data = self.table.load()
        data["deployments"].append({"version": ref.version, "component": name, "at": time.time()})
        self.table.save(data)
        if old_record is not None and old_record.name != name:
            processes.stop(old_record, self.local.stop_timeout_s)
            self.table.drop(old_record.name)
            outcome.steps.append(StepResult(old_record.name, "stopped", "after the switch"))
        outcome.info["model_version"] = ref.version
        outcome.info["gateway"] = self._url(self.local.gateway_port)
        return outcome

    def _predictor_ready(self, url: str) -> bool:
        try:
            r = httpx.get(f"{url}/v1/models/{self.config.serving.model_name}", timeout=2.0)
            return r.status_code == 200 and bool(r.json().get("ready"))
        except (httpx.HTTPError, ValueError):
            return False

    def _gateway_request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        creds = self.credentials() if self.config.gateway.auth else None
        if self.config.gateway.auth and creds is None:
            raise PreflightError("no gateway credentials found",
                                 hint="run `mlops up` (generates them) or set MLOPS_GATEWAY_PASSWORD")
        url = self._url(self.local.gateway_port) + path
        try:
            return httpx.request(method, url, auth=creds, timeout=self.config.gateway.timeout_s + 5, **kwargs)
        except httpx.TransportError:
            raise PreflightError(f"the gateway at {url} is not reachable",
                                 hint="start the platform with `mlops up` and deploy a model with `mlops deploy`") from None

    def _switch_gateway(self, url: str, version: str) -> None:
        response = self._gateway_request("PUT", "/admin/upstream", json={"url": url, "model_version": version})
        if response.status_code != 200:
            raise MlopsError(f"the gateway refused the switch: HTTP {response.status_code} {response.text[:200]}")

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        if len(texts) == 1:
            response = self._gateway_request("POST", "/predict", json={"text": texts[0]})
            body = _json_or_error(response)
            return [body]
        response = self._gateway_request("POST", "/predict/batch", json={"texts": texts})
        return _json_or_error(response)["predictions"]

    def logs(self, component: str, *, follow: bool = False, lines: int = 50) -> Iterator[str]:
        path = self.log_dir / f"{component}.log"
        if not path.is_file():
            known = sorted(p.stem for p in self.log_dir.glob("*.log")) if self.log_dir.is_dir() else []
            raise NotFoundError(f"no log for {component!r}", hint=f"components with logs: {', '.join(known) or 'none yet (run mlops up)'}")
        return processes.follow(path, lines, follow)

    def checks(self) -> list:
        from ..core.doctor import Check

        out = []
        records = self.table.records()
        for name, port in (("mlflow", self.local.mlflow_port), ("gateway", self.local.gateway_port),
                           ("drift", self.local.drift_port)):
            ours = name in records and records[name].alive()
            owner = None if ours else processes.port_owner(port, self.local.host)
            out.append(Check(f"port {port} ({name})", owner is None, "ours" if ours else (owner or "free"),
                             "" if owner is None else f"free the port or change [local].{name}_port", False))
        return out


def _json_or_error(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200:
        message = body.get("error", {}).get("message") if isinstance(body, dict) else response.text[:200]
        hint = {503: "deploy a model with `mlops deploy` (or check `mlops status`)",
                401: "check MLOPS_GATEWAY_PASSWORD or the generated password file"}.get(response.status_code)
        raise MlopsError(f"gateway answered HTTP {response.status_code}: {message}", hint=hint)
    return body

"""Serving on the local target: `deploy` starts the new version's predictor beside the old one and switches
the gateway once it is ready (no request dropped), or with `--canary P` splits the traffic between the two
(targets/local_canary.py); `predict` goes through the gateway.

`LocalServing` is a part of `LocalTarget` (targets/local.py), which gives it `config`, `local`, `table`,
`credentials`, `_url` and (from LocalComponents) the supervised programs.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from ..common.atomic_file import write_atomically
from ..common.errors import (GatewayOverloaded, MlopsError, NotFoundError, PreflightError, UnreachableError, UsageError,
                             gateway_refusal)
from ..common.progress import Reporter
from ..platform import processes
from ..platform.prometheus_local import write_predictor_targets
from .base import DeployOptions, Outcome, StepResult
from .local_canary import ROLLED_BACK, RUNNING, LocalCanary
from .local_components import PYTHON, Component


class LocalServing(LocalCanary):
    def _current_deployment(self, data: dict | None = None) -> dict | None:
        deployments = (data or self.table.load())["deployments"]
        return deployments[-1] if deployments else None

    def deploy(self, options: DeployOptions, reporter: Reporter) -> Outcome:
        if options.promote:
            return self._promote_canary(reporter)
        from ..registry import versions as registry
        from ..registry.serving_runtime import predictor_args, served_model_dir

        data = self.table.load()
        canary = self._canary(data)
        if options.rollback and canary and canary["state"] in (RUNNING, ROLLED_BACK):
            return self._rollback_canary(data, reporter)
        if options.rollback and options.canary_only:
            outcome = Outcome()
            outcome.info["message"] = "no canary is running: serving is unchanged"
            return outcome
        if options.canary is None:
            self._refuse_while_canary(data)
        version = _rollback_version(data["deployments"]) if options.rollback else options.version
        reporter.start("resolve", "resolving model version")
        ref = registry.resolve_version(self.config, version=version,
                                       alias=None if version else (options.alias or self.config.registry.champion_alias))
        reporter.finish("resolve", f"version {ref.version}")
        running = self._running_canary(data)
        if options.canary is not None and self._current_deployment(data) is None:
            raise UsageError("a canary needs a version already serving to split the traffic with; nothing is deployed",
                             hint=f"deploy one first: `mlops deploy --version N`, then `--version {ref.version} --canary "
                                  f"{options.canary}`")
        if options.canary is not None and running:
            if running["version"] != ref.version:
                self._refuse_while_canary(data)
            return self._reweigh_canary(data, options.canary)
        model_dir = registry.local_model_dir(self.config, ref)
        model_dir = served_model_dir(self.config, ref, model_dir, reporter)

        outcome = Outcome()
        outcome.steps += [s for s in self._converge([self._gateway_component()], reporter) if s.action == "started"]
        taken = {r.port for r in data["processes"].values()}
        port = processes.free_port_from(self.local.predictor_port, self.local.host, taken)
        name = f"predictor-v{ref.version}"
        previous = self._current_deployment(data)
        old_record = data["processes"].get(previous["component"]) if previous else None
        url = self._url(port)

        def command(at_port: int) -> list[str]:
            return [PYTHON, "-m", "models.predictor", "--model-dir", str(model_dir), "--model-name",
                    self.config.serving.model_name, "--version", ref.version, "--http-port", str(at_port),
                    "--host", self.local.host, *predictor_args(self.config)]

        cmd = command(port)
        if old_record is not None and old_record.meta.get("version") == ref.version:
            if old_record.cmd == command(old_record.port) and self._predictor_ready(old_record.url):
                if options.canary is not None:
                    outcome.info["canary_skipped"] = (f"version {ref.version} already serves 100% with these settings: "
                                                      "nothing new to canary")
                outcome.steps.append(StepResult(old_record.name, "unchanged",
                                                f"version {ref.version} already serves at {old_record.url}"))
                outcome.info["model_version"] = ref.version
                outcome.info["message"] = f"version {ref.version} is already deployed; nothing to do"
                outcome.info["gateway"] = self._url(self.local.gateway_port)
                return outcome
            if old_record.name == name:
                name = f"{name}-{port}"  # the serving version with other [serving] settings: a fresh process beside it
        component = Component(name, port, cmd, f"/v1/models/{self.config.serving.model_name}",
                              start_timeout_s=self.config.serving.ready_timeout_s)
        sup = self._supervisor()
        # Not in the table until ready: the healer leaves a predictor alone while `deploy` waits on it.
        sup.write_program(self._program(component))
        try:
            sup.sync()
            reporter.start(name, f"starting predictor v{ref.version}")
            processes.wait_until(
                self._record(component), lambda: self._predictor_ready(url),
                lambda: sup.info().get(name, {}).get("statename") in ("EXITED", "FATAL", "BACKOFF"),
                component.start_timeout_s)
        except BaseException as exc:
            sup.remove_program(name)
            if isinstance(exc, MlopsError) and previous:
                exc.message += f"\nversion {previous['version']} keeps serving"
            raise
        self.table.put(self._record(component, {"version": ref.version}))
        reporter.finish(name, f"ready on {url}")
        outcome.steps.append(StepResult(name, "started", url))
        if options.canary is not None:
            try:
                split = self._start_canary(ref.version, name, url, options.canary, previous)
            except BaseException:
                self._stop_predictor(name, "the gateway refused the split")  # nothing half-done: no split, no process
                raise
            split.steps[:0] = outcome.steps
            return split

        self._switch_gateway(url, ref.version)
        write_atomically(self.upstream_file, json.dumps({"url": url, "model_version": ref.version}))
        write_predictor_targets(self.config, {port: name})
        outcome.steps.append(StepResult("gateway", "switched", f"to version {ref.version}"))
        data = self.table.load()
        data["deployments"].append({"version": ref.version, "component": name, "at": time.time()})
        data["canary"] = None  # a deploy of its own ends any canary history: --rollback goes to the version before
        self.table.save(data)
        if old_record is not None and old_record.name != name:
            sup.remove_program(old_record.name)
            self.table.drop(old_record.name)
            outcome.steps.append(StepResult(old_record.name, "stopped", "after the switch"))
        outcome.info["model_version"] = ref.version
        outcome.info["gateway"] = self._url(self.local.gateway_port)
        return outcome

    def _predictor_ready(self, url: str) -> bool:
        try:
            r = httpx.get(f"{url}/v1/models/{self.config.serving.model_name}", timeout=self.local.health_timeout_s)
            return r.status_code == 200 and bool(r.json().get("ready"))
        except (httpx.HTTPError, ValueError):
            return False

    def _gateway_client(self) -> httpx.Client:
        """One keep-alive client for every call to the gateway (httpx 0.28's Client "can be shared between
        threads", httpx/_client.py): `predict --file` sends hundreds of batches, two at a time, and a
        client per request paid a new connection and TLS context each time (2.3x the CLI's CPU per row,
        and ~15% more peak memory at 10k rows than at 1k)."""
        with self._http_lock:
            if self._http is None:
                self._http = httpx.Client()
            return self._http

    def _gateway_request(self, method: str, path: str, *, admin: bool = False, **kwargs: Any) -> httpx.Response:
        if admin:
            creds = self.admin_credentials()
            if creds is None:
                raise PreflightError("no gateway admin credentials found",
                                     hint="run `mlops up` (generates them) or set MLOPS_GATEWAY_ADMIN_PASSWORD")
        else:
            creds = self.credentials() if self.config.gateway.auth else None
            if self.config.gateway.auth and creds is None:
                raise PreflightError("no gateway credentials found",
                                     hint="run `mlops up` (generates them) or set MLOPS_GATEWAY_PASSWORD")
        url = self._url(self.local.gateway_port) + path
        try:
            return self._gateway_client().request(method, url, auth=creds, timeout=self.local.client_timeout_s, **kwargs)
        except httpx.TransportError:
            raise UnreachableError(f"the gateway at {url} is not reachable",
                                 hint="start the platform with `mlops up` and deploy a model with `mlops deploy`") from None

    def _switch_gateway(self, url: str, version: str) -> None:
        response = self._gateway_request("PUT", "/admin/upstream", admin=True,
                                         json={"url": url, "model_version": version})
        if response.status_code != 200:
            raise MlopsError(f"the gateway refused the switch: HTTP {response.status_code} {response.text[:200]}")

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        if len(texts) == 1:
            response = self._gateway_request("POST", "/predict", json={"text": texts[0]})
            body = _json_or_error(response)
            return [body]
        response = self._gateway_request("POST", "/predict/batch", json={"texts": texts})
        return _json_or_error(response)["predictions"]


def _rollback_version(history: list[dict]) -> str:
    """The last deployed version other than the serving one: deploying the serving version again (a
    no-op now, an extra history entry before) must not make `--rollback` go back to it."""
    if history:
        serving = history[-1]["version"]
        for entry in reversed(history):
            if entry["version"] != serving:
                return entry["version"]
        raise NotFoundError(f"there is no earlier version to roll back to: only version {serving} was ever deployed",
                            hint="deploy another version with `mlops deploy --version N`")
    raise NotFoundError("there is no previous deployment to roll back to",
                        hint="deploy a version first: `mlops deploy --version N`")


def _json_or_error(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200:
        message = body.get("error", {}).get("message") if isinstance(body, dict) else response.text[:200]
        hint = {503: "deploy a model with `mlops deploy` (or check `mlops status`)",
                401: "check MLOPS_GATEWAY_PASSWORD or the generated password file"}.get(response.status_code)
        shed = GatewayOverloaded.from_reply(response.status_code, response.headers, message)
        if shed is not None:
            raise shed
        raise gateway_refusal(response.status_code, f"gateway answered HTTP {response.status_code}: {message}", hint)
    return body

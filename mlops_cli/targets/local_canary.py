"""A canary on the local target: the new version's predictor beside the serving one, and the gateway
sending it `percent`% of the requests (services/traffic_split.py).

State lives in the process table (`canary`: version, component, baseline, percent, state) and in the
gateway's upstream file, so a restarted gateway keeps the split and `--promote` / `--rollback` find it.
Each step changes the gateway first and the records after it, so a step cut short is finished by running
it again: promote and rollback are idempotent (a second one reports "unchanged").

Prometheus (`mlops up --with-prometheus`) labels each predictor with its program name as `revision`, so
the canary judge reads the two versions' own request counters exactly as in a cluster.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ..common.atomic_file import write_atomically
from ..common.errors import MlopsError, UsageError
from ..common.progress import Reporter
from ..platform.prometheus_local import write_predictor_targets
from .base import Outcome, StepResult

RUNNING, PROMOTED, ROLLED_BACK = "running", "promoted", "rolled back"


class LocalCanary:
    def _canary(self, data: dict | None = None) -> dict | None:
        return (data or self.table.load()).get("canary")

    def _running_canary(self, data: dict | None = None) -> dict | None:
        canary = self._canary(data)
        return canary if canary and canary.get("state") == RUNNING else None

    def _predictor_targets(self, data: dict | None = None) -> dict[int, str]:
        """{port: program name} of the predictors that take traffic now (serving, and a running canary)."""
        data = data or self.table.load()
        names = [d["component"] for d in data["deployments"][-1:]]
        canary = self._running_canary(data)
        if canary:
            names.append(canary["component"])
        records = data["processes"]
        return {records[n].port: n for n in names if n in records}

    def _refuse_while_canary(self, data: dict) -> None:
        canary = self._running_canary(data)
        if canary:
            raise UsageError(f"a canary of version {canary['version']} is running ({canary['percent']}% of the traffic)",
                             hint="finish it first: `mlops deploy --promote` or `mlops deploy --rollback`")

    def _reweigh_canary(self, data: dict, percent: int) -> Outcome:
        canary = data["canary"]
        record = data["processes"][canary["component"]]
        self._put_canary(record.url, canary["version"], percent)
        data["canary"] = {**canary, "percent": percent}
        self._write_upstream(data)
        self.table.save(data)
        outcome = self._canary_outcome(data["canary"])
        outcome.steps.append(StepResult("gateway", "updated", f"{percent}% to version {canary['version']}"))
        return outcome

    def _start_canary(self, version: str, name: str, url: str, percent: int, previous: dict) -> Outcome:
        """The canary's predictor is ready (and recorded): split the traffic, then record the split."""
        self._put_canary(url, version, percent)
        data = self.table.load()
        data["canary"] = {"version": version, "component": name, "percent": percent, "state": RUNNING,
                          "baseline_version": previous["version"], "baseline_component": previous["component"],
                          "at": time.time()}
        self._write_upstream(data)
        self.table.save(data)
        write_predictor_targets(self.config, self._predictor_targets(data))
        outcome = self._canary_outcome(data["canary"])
        outcome.steps.append(StepResult("gateway", "split", f"{percent}% to version {version}, "
                                                            f"{100 - percent}% to version {previous['version']}"))
        return outcome

    def _promote_canary(self, reporter: Reporter) -> Outcome:
        data = self.table.load()
        canary = self._canary(data)
        if canary is None or canary.get("state") == ROLLED_BACK:
            raise MlopsError("there is no canary to promote", hint="start one with: mlops deploy --version N --canary 10")
        outcome = Outcome()
        outcome.info["model_version"] = canary["version"]
        if canary["state"] == PROMOTED:
            outcome.steps.append(StepResult(canary["component"], "unchanged", f"version {canary['version']} already promoted"))
            outcome.info["message"] = f"version {canary['version']} was already promoted; nothing to do"
            return outcome
        record = data["processes"].get(canary["component"])
        if record is None:
            raise MlopsError(f"the canary's predictor {canary['component']} is not recorded",
                             hint="roll the canary back with `mlops deploy --rollback`")
        reporter.start("promote", f"sending all traffic to version {canary['version']}")
        self._switch_gateway(record.url, canary["version"])  # its share first, then the rest of the traffic
        self._gateway_admin("DELETE", "/admin/canary")
        data["canary"] = {**canary, "state": PROMOTED, "percent": 100, "at": time.time()}
        data["deployments"].append({"version": canary["version"], "component": canary["component"], "at": time.time(),
                                    "via": "canary"})
        self._write_upstream(data)
        self.table.save(data)
        write_predictor_targets(self.config, self._predictor_targets(data))
        reporter.finish("promote", f"version {canary['version']} serves all traffic")
        outcome.steps.append(StepResult("gateway", "switched", f"to version {canary['version']} (promoted)"))
        outcome.steps += self._stop_predictor(canary["baseline_component"], "after the promotion")
        outcome.info["gateway"] = self._url(self.local.gateway_port)
        return outcome

    def _rollback_canary(self, data: dict, reporter: Reporter) -> Outcome:
        canary = data["canary"]
        outcome = Outcome()
        outcome.info["model_version"] = canary["baseline_version"]
        if canary["state"] == ROLLED_BACK:
            outcome.steps.append(StepResult(canary["component"], "unchanged", "the canary was already rolled back"))
            outcome.info["message"] = (f"the canary of version {canary['version']} was already rolled back; "
                                       f"version {canary['baseline_version']} serves all traffic")
            return outcome
        reporter.start("rollback", f"dropping the canary of version {canary['version']}")
        self._gateway_admin("DELETE", "/admin/canary")
        data["canary"] = {**canary, "state": ROLLED_BACK, "percent": 0, "at": time.time()}
        self._write_upstream(data)
        self.table.save(data)
        write_predictor_targets(self.config, self._predictor_targets(data))
        reporter.finish("rollback", f"version {canary['baseline_version']} serves all traffic")
        outcome.steps.append(StepResult("gateway", "switched", f"all traffic to version {canary['baseline_version']}"))
        outcome.steps += self._stop_predictor(canary["component"], "canary rolled back")
        outcome.info["gateway"] = self._url(self.local.gateway_port)
        return outcome

    def _canary_outcome(self, canary: dict) -> Outcome:
        outcome = Outcome()
        outcome.info.update({"model_version": canary["version"], "canary_percent": canary["percent"],
                             "canary_revision": canary["component"], "baseline_revision": canary["baseline_component"],
                             "traffic": f"{canary['percent']}% version {canary['version']}, {100 - canary['percent']}% "
                                        f"version {canary['baseline_version']}",
                             "gateway": self._url(self.local.gateway_port)})
        return outcome

    def _stop_predictor(self, name: str, why: str) -> list[StepResult]:
        if name not in self.table.records():
            return []
        self._supervisor().remove_program(name)
        self.table.drop(name)
        return [StepResult(name, "stopped", why)]

    def _write_upstream(self, data: dict) -> None:
        """The gateway's upstream file: the serving predictor, and a running canary (read on a restart)."""
        serving = data["deployments"][-1]
        records = data["processes"]
        body: dict[str, Any] = {"url": records[serving["component"]].url, "model_version": serving["version"]}
        canary = self._running_canary(data)
        if canary and canary["component"] in records:
            body["canary"] = {"url": records[canary["component"]].url, "model_version": canary["version"],
                              "percent": canary["percent"]}
        write_atomically(self.upstream_file, json.dumps(body))

    def _put_canary(self, url: str, version: str, percent: int) -> None:
        self._gateway_admin("PUT", "/admin/canary", json={"url": url, "model_version": version, "percent": percent})

    def _gateway_admin(self, method: str, path: str, **kwargs: Any) -> None:
        response = self._gateway_request(method, path, admin=True, **kwargs)
        if response.status_code != 200:
            raise MlopsError(f"the gateway refused {method} {path}: HTTP {response.status_code} {response.text[:200]}")

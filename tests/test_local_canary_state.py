"""The local canary's records (targets/local_canary.py) without starting a model: promote and rollback are
idempotent, a gateway that refuses leaves the records as they were (running the command again finishes it),
and a deploy while a canary runs is one clear refusal. The gateway is a loopback HTTP server that answers
(or refuses) the admin routes as the real one does (services/traffic_split.py, tests/test_traffic_split.py)."""

from __future__ import annotations

import json
import time

import pytest

from mlops_cli.common.errors import MlopsError, UsageError
from mlops_cli.common.progress import SILENT
from mlops_cli.config.loading import load_config
from mlops_cli.platform.processes import ProcessRecord
from mlops_cli.targets.base import DeployOptions
from mlops_cli.targets.local import LocalTarget

from .support import QuietHandler, free_port, http_server


class Gateway:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict | None]] = []
        self.refuse = False

    def handler(self):
        gateway = self

        class Handler(QuietHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                gateway.calls.append((self.command, self.path, body))
                if gateway.refuse:
                    self.send_json(503, {"error": {"code": "busy", "message": "refused on purpose"}})
                else:
                    self.send_json(200, {"ok": True})

            do_PUT = do_DELETE = _answer

        return Handler


@pytest.fixture
def local(project, monkeypatch):
    """A local target whose table says: version 1 serves, version 2 is a 30% canary beside it."""
    gateway = Gateway()
    with http_server(gateway.handler()) as url:
        port = int(url.rsplit(":", 1)[1])
        (project / "mlops.toml").write_text(f'[project]\nname = "c"\n[local]\ngateway_port = {port}\n')
        monkeypatch.setenv("MLOPS_GATEWAY_ADMIN_PASSWORD", "admin-pass")
        target = LocalTarget(load_config())
        data = target.table.load()
        for version, p in (("1", free_port()), ("2", free_port())):
            name = f"predictor-v{version}"
            data["processes"][name] = ProcessRecord(name, p, f"http://127.0.0.1:{p}", ["true"], "", time.time(),
                                                    {"version": version})
        data["deployments"] = [{"version": "1", "component": "predictor-v1", "at": time.time()}]
        data["canary"] = {"version": "2", "component": "predictor-v2", "percent": 30, "state": "running",
                          "baseline_version": "1", "baseline_component": "predictor-v1", "at": time.time()}
        target.table.save(data)
        yield target, gateway


def _upstream(target) -> dict:
    return json.loads(target.upstream_file.read_text())


def test_promote_switches_then_stops_the_old_predictor_and_a_second_promote_changes_nothing(local):
    target, gateway = local
    outcome = target.deploy(DeployOptions(promote=True), SILENT)
    assert [(m, p) for m, p, _ in gateway.calls] == [("PUT", "/admin/upstream"), ("DELETE", "/admin/canary")]
    assert gateway.calls[0][2]["model_version"] == "2"
    data = target.table.load()
    assert data["canary"]["state"] == "promoted" and data["deployments"][-1]["version"] == "2"
    assert list(data["processes"]) == ["predictor-v2"]
    assert "canary" not in _upstream(target) and _upstream(target)["model_version"] == "2"
    assert ("predictor-v1", "stopped") in [(s.name, s.action) for s in outcome.steps]

    gateway.calls.clear()
    again = target.deploy(DeployOptions(promote=True), SILENT)
    assert gateway.calls == [] and "already promoted" in again.info["message"]
    assert target.table.load() == data


def test_rollback_drops_the_canary_and_a_second_rollback_changes_nothing(local):
    target, gateway = local
    target.deploy(DeployOptions(rollback=True), SILENT)
    assert [(m, p) for m, p, _ in gateway.calls] == [("DELETE", "/admin/canary")]
    data = target.table.load()
    assert data["canary"]["state"] == "rolled back" and data["deployments"][-1]["version"] == "1"
    assert list(data["processes"]) == ["predictor-v1"]
    assert _upstream(target) == {"url": data["processes"]["predictor-v1"].url, "model_version": "1"}

    gateway.calls.clear()
    again = target.deploy(DeployOptions(rollback=True), SILENT)
    assert gateway.calls == [] and "already rolled back" in again.info["message"]
    with pytest.raises(MlopsError, match="there is no canary to promote"):
        target.deploy(DeployOptions(promote=True), SILENT)     # a rolled-back canary is not promoted later


@pytest.mark.parametrize("options", [DeployOptions(promote=True), DeployOptions(rollback=True)])
def test_a_gateway_that_refuses_leaves_every_record_as_it_was_and_the_rerun_finishes(local, options):
    target, gateway = local
    before = target.table.load()
    gateway.refuse = True
    with pytest.raises(MlopsError, match="the gateway refused"):
        target.deploy(options, SILENT)
    assert target.table.load() == before and not target.upstream_file.exists()
    gateway.refuse = False
    target.deploy(options, SILENT)
    assert target.table.load()["canary"]["state"] in ("promoted", "rolled back")


def test_another_deploy_while_a_canary_runs_is_refused_before_anything_starts(local):
    target, gateway = local
    with pytest.raises(UsageError, match="a canary of version 2 is running") as refused:
        target.deploy(DeployOptions(version="3"), SILENT)
    assert "--promote" in refused.value.hint and gateway.calls == []


def test_prometheus_targets_are_both_predictors_while_the_canary_runs(local):
    target, _ = local
    records = target.table.records()
    assert target._predictor_targets() == {records["predictor-v1"].port: "predictor-v1",
                                           records["predictor-v2"].port: "predictor-v2"}
    target.deploy(DeployOptions(rollback=True), SILENT)
    assert target._predictor_targets() == {records["predictor-v1"].port: "predictor-v1"}


def test_the_loops_crash_rollback_drops_a_canary_but_never_goes_back_a_version(local):
    """loop/cycle.py rolls back after a crash in the canary step; a crash before the split (no canary out)
    must leave serving as it was, not deploy the version before it (what a plain --rollback does)."""
    from mlops_cli.loop.steps import rollback

    target, gateway = local
    rollback(target.config, target, SILENT)                       # the canary is out: dropped
    assert target.table.load()["canary"]["state"] == "rolled back"
    data = target.table.load()
    data["canary"] = None                                         # no canary (a crash before the split)
    data["deployments"].insert(0, {"version": "0", "component": "predictor-v0", "at": time.time()})
    target.table.save(data)
    gateway.calls.clear()
    outcome = rollback(target.config, target, SILENT)
    assert "no canary is running" in outcome.info["message"] and gateway.calls == []
    assert target.table.load()["deployments"][-1]["version"] == "1"

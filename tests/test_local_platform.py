"""The local platform end to end, as real processes on loopback with a tiny model:
up → train → register → deploy → predict (CLI, curl-style, V1, V2) → status → failover → hot switch
and rollback under load (4 clients, no request dropped) → config changes picked up by `up` → a killed
supervisord → down then up serving the same version → down, leaving no process behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import httpx
import psutil
import pytest

from .support import free_port, local_platform, run_subprocess_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def platform(tmp_path_factory, tiny_base_model):
    with local_platform(tmp_path_factory.mktemp("platform"), tiny_base_model, "e2e") as p:
        yield p


def test_up_starts_every_component(platform):
    result = platform.ok("up")
    assert "gateway-password" in result.stderr + result.stdout
    secret = platform.root / ".mlops" / "secrets" / "gateway-password"
    assert secret.stat().st_mode & 0o777 == 0o600
    admin = platform.root / ".mlops" / "secrets" / "gateway-admin-password"  # D16: /admin's own credential
    assert admin.stat().st_mode & 0o777 == 0o600 and platform.admin_auth[1] != platform.password
    assert platform.admin_auth[1] not in result.stdout + result.stderr
    assert platform.password not in (platform.root / "mlops.toml").read_text()
    status = platform.status()
    for component in ("mlflow", "drift", "gateway"):
        assert status[component]["healthy"], status
    assert httpx.get(f"http://127.0.0.1:{platform.ports['mlflow']}/health").status_code == 200


def test_up_again_is_a_no_op(platform):
    before = {k: v["pid"] for k, v in platform.status().items()}
    result = platform.ok("up", "--json")
    assert {s["action"] for s in json.loads(result.stdout)["steps"]} == {"already running"}
    assert {k: v["pid"] for k, v in platform.status().items()} == before


def test_train_register_two_versions(platform):
    platform.ok("data", "prepare")
    platform.ok("train", "--log", "--max-steps", "2")
    platform.ok("register", "--alias", "champion")
    platform.ok("train", "--log", "--max-steps", "3", "--seed", "7")
    platform.ok("register")
    versions = json.loads(platform.ok("models", "list", "--json").stdout)
    assert {str(v["version"]) for v in (versions["versions"] if isinstance(versions, dict) else versions)} >= {"1", "2"}


def test_deploy_and_predict(platform):
    platform.ok("deploy", "--version", "1")
    result = json.loads(platform.ok("predict", "this movie was great", "--json").stdout)
    assert result["label"] in {"Positive", "Negative"}
    assert 0.5 <= result["confidence"] <= 1.0
    assert result["model_version"] == "1"
    # The default [serving].runtime serves the version's int8 ONNX export (issue 13, acceptance 3).
    assert list((platform.root / ".mlops" / "models").glob("*/1/onnx-int8/model.onnx"))

    # The seed stack's client call, unchanged: curl -u admin:<password> -X POST .../predict
    response = httpx.post(f"{platform.gateway}/predict", auth=("admin", platform.password),
                          json={"text": "this movie was great"})
    assert response.status_code == 200 and set(response.json()) == {"label", "confidence", "model_version"}
    batch = httpx.post(f"{platform.gateway}/predict/batch", auth=("admin", platform.password),
                       json={"texts": ["great", "terrible side effects"]})
    assert [p["model_version"] for p in batch.json()["predictions"]] == ["1", "1"]
    assert httpx.post(f"{platform.gateway}/predict", json={"text": "x"}).status_code == 401

    # D16: /predict's password no longer switches the upstream; the admin one does, to our predictors only.
    served = httpx.get(f"{platform.gateway}/admin/upstream", auth=platform.admin_auth).json()
    assert served["model_version"] == "1"
    for auth, url, code in ((platform.auth, served["url"], 401), (platform.admin_auth, "http://example.com:80", 422)):
        response = httpx.put(f"{platform.gateway}/admin/upstream", auth=auth, json={**served, "url": url})
        assert response.status_code == code, response.text


def test_predictor_speaks_v1_and_v2(platform):
    predictor = platform.status()["predictor-v1"]
    v1 = httpx.post(f"{predictor['url']}/v1/models/sentiment:predict", json={"instances": ["good", "bad"]})
    assert v1.status_code == 200
    first = v1.json()["predictions"][0]
    assert len(first["logits"]) == len(first["labels"]) == 2 and first["model_version"] == "1"
    v2 = httpx.post(f"{predictor['url']}/v2/models/sentiment/infer", json={
        "id": "req-1", "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["good", "bad"]}]})
    assert v2.status_code == 200, v2.text
    body = v2.json()
    assert body["id"] == "req-1" and body["model_version"] == "1"
    logits = next(o for o in body["outputs"] if o["name"] == "logits")
    assert logits["shape"] == [2, 2]
    bad = httpx.post(f"{predictor['url']}/v1/models/sentiment:predict", json={"instances": [""]})
    assert 400 <= bad.status_code < 500


def test_status_lists_components_with_versions(platform):
    status = platform.status()
    assert status["predictor-v1"]["version"] == "1" and status["predictor-v1"]["healthy"]
    assert status["gateway"]["version"] == "1"
    assert all(c["pid"] and c["uptime_s"] is not None for c in status.values())
    table = platform.ok("status").stdout
    assert "predictor-v1" in table and "gateway" in table


# README, "Self-healing": a killed predictor serves again within this many seconds (tiny model, 2 cores).
RESTART_BOUND_S = 120.0


def test_predictor_kill_9_is_503_then_heals_itself(platform):
    """Acceptance 1: kill -9 of the predictor: 503 at once, 200 again with no command run, one restart."""
    before = platform.status()["predictor-v1"]
    assert before["restarts"] == 0
    os.kill(before["pid"], signal.SIGKILL)
    start = time.monotonic()
    auth = ("admin", platform.password)
    down = httpx.post(f"{platform.gateway}/predict", auth=auth, json={"text": "good"}, timeout=10)
    assert down.status_code == 503 and time.monotonic() - start < 2.0 + 1.0  # [gateway].timeout_s + slack
    assert down.json()["error"]["code"] == "predictor_unavailable"
    codes = set()
    while time.monotonic() - start < RESTART_BOUND_S:
        r = httpx.post(f"{platform.gateway}/predict", auth=auth, json={"text": "good"}, timeout=10)
        codes.add(r.status_code)
        if r.status_code == 200:
            break
        time.sleep(0.2)
    assert r.status_code == 200, f"not healed within {RESTART_BOUND_S} s: {r.status_code} {r.text}"
    assert codes <= {200, 503}
    after = platform.status()["predictor-v1"]
    assert after["restarts"] == 1 and after["pid"] != before["pid"] and after["healthy"]
    assert after["last_exit"] == "terminated by SIGKILL" and after["last_exit_code"] == -9
    assert after["last_restart_at"] > time.time() - RESTART_BOUND_S - 5
    assert "1 (last: terminated by SIGKILL" in platform.ok("status").stdout


def _predictor_scrape_targets(platform) -> list[str]:
    """What the local Prometheus scrapes for the predictor job (file_sd: `deploy` rewrites the file)."""
    groups = json.loads((platform.root / ".mlops" / "local" / "predictor-targets.json").read_text())
    return [t for g in groups for t in g["targets"]]


def _deploy_under_load(platform, *args: str):
    """`mlops deploy *args` while 4 clients call /predict (20 answers before it, 20 after); returns the load
    and when deploy started and returned."""
    with platform.load(clients=4, max_seconds=300, max_requests=100_000) as load:
        assert load.wait_for(lambda s: sum(x.status == 200 for x in s) >= 20, 30)
        began = time.monotonic()
        platform.ok("deploy", *args)
        done_at = time.monotonic()
        assert load.wait_for(lambda s: sum(x.start > done_at for x in s) >= 20, 30)
    return load, began, done_at


def _no_flip_back(load, version: str) -> bool:
    """Once one client has an answer from `version`, no request sent after it gets another version."""
    first_end = min(s.start + s.latency for s in load.samples if s.version == version)
    return all(s.version == version for s in load.samples if s.start > first_end)


def test_switching_versions_under_load_drops_no_request(platform):
    load, began, done_at = _deploy_under_load(platform, "--version", "2")
    print(f"\nswitch 1 -> 2: {len(load.samples)} requests, {len(load.failures())} failed")
    assert load.failures() == []
    assert {s.version for s in load.samples if s.start < began} == {"1"}
    assert {s.version for s in load.samples if s.start > done_at} == {"2"}  # switched once deploy returns
    assert _no_flip_back(load, "2")
    status = platform.status()
    assert "predictor-v1" not in status and status["predictor-v2"]["healthy"]
    # D11: the serving predictor moved to the next free port; Prometheus' target moved with it.
    assert _predictor_scrape_targets(platform) == [status["predictor-v2"]["url"].removeprefix("http://")]


def test_deploying_the_serving_version_again_is_a_no_op(platform):
    """D27: it started `predictor-v2-<port>` and stopped `predictor-v2`; and D8: the deployment history
    became 1, 2, 2, so the rollback test below went "back" to 2."""
    before = platform.status()
    result = json.loads(platform.ok("deploy", "--version", "2", "--json").stdout)
    assert [(s["name"], s["action"]) for s in result["steps"]] == [("predictor-v2", "unchanged")]
    assert "already deployed" in result["message"]
    after = platform.status()
    assert [n for n in after if n.startswith("predictor")] == ["predictor-v2"]
    assert after["predictor-v2"]["pid"] == before["predictor-v2"]["pid"]


def test_metrics_and_prediction_log(platform):
    metrics = httpx.get(f"{platform.gateway}/metrics").text
    assert 'mlops_gateway_requests_total{method="POST",route="/predict",status="200"}' in metrics
    assert 'mlops_gateway_request_duration_seconds_count{route="/predict"}' in metrics
    assert 'mlops_predictions_total{' in metrics and 'model_version="2"' in metrics
    assert 'mlops_model_info{model_name="sentiment",model_version="2"} 1.0' in metrics
    lines = (platform.root / ".mlops" / "predictions.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert len(entries) >= 10
    assert {"ts", "request_id", "model_version", "label", "confidence", "text_length", "word_count", "oov_share"} <= set(entries[-1])
    assert "text" not in entries[-1]  # raw text only with [gateway].log_text = true


def test_logs_are_json_lines_with_request_ids(platform):
    response = httpx.post(f"{platform.gateway}/predict", auth=("admin", platform.password), json={"text": "fine"},
                          headers={"x-request-id": "trace-me-123"})
    assert response.headers["x-request-id"] == "trace-me-123"
    lines = platform.ok("logs", "gateway", "-n", "200").stdout.splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(e.get("request_id") == "trace-me-123" and e.get("service") for e in entries)
    # D37: the healer's /healthz probe every 2 s made up most of the log; probes are debug lines now.
    assert not [e for e in entries if e.get("route") in ("/healthz", "/readyz")]
    missing = platform.mlops("logs", "nonexistent")
    assert missing.returncode == 2 and "gateway" in missing.stderr


def test_rollback_under_load_returns_to_version_1(platform):
    load, began, done_at = _deploy_under_load(platform, "--rollback")
    print(f"\nrollback 2 -> 1: {len(load.samples)} requests, {len(load.failures())} failed")
    assert load.failures() == [] and {s.version for s in load.samples if s.start < began} == {"2"}
    assert {s.version for s in load.samples if s.start > done_at} == {"1"} and _no_flip_back(load, "1")
    result = json.loads(platform.ok("predict", "fine", "--json").stdout)
    assert result["model_version"] == "1"


def test_up_applies_a_changed_port_or_password_and_says_so(platform):
    """D10: `up` said "already running" while supervisord restarted the gateway with the new setting; the
    record kept the old URL, so `status` called it unhealthy and the README's curl got 401."""
    new_port = free_port()
    toml = platform.root / "mlops.toml"
    toml.write_text(toml.read_text().replace(f"gateway_port = {platform.ports['gateway']}", f"gateway_port = {new_port}"))
    platform.ports["gateway"] = new_port
    steps = {s["name"]: s for s in json.loads(platform.ok("up", "--json").stdout)["steps"]}
    assert steps["gateway"]["action"] == "restarted (port changed)" and steps["gateway"]["detail"].endswith(f":{new_port}")
    assert steps["mlflow"]["action"] == "already running"
    status = platform.status()
    assert status["gateway"]["url"].endswith(f":{new_port}") and status["gateway"]["healthy"], status["gateway"]
    assert platform.predict().json()["model_version"] == "1"

    steps = {s["name"]: s["action"] for s in json.loads(platform.mlops(
        "up", "--json", env={"MLOPS_GATEWAY_PASSWORD": "chosen-by-env-7"}).stdout)["steps"]}
    assert steps["gateway"] == "restarted (password changed)"
    assert httpx.post(f"{platform.gateway}/predict", auth=("admin", "chosen-by-env-7"), json={"text": "ok"}).status_code == 200
    steps = {s["name"]: s["action"] for s in json.loads(platform.ok("up", "--json").stdout)["steps"]}
    assert steps["gateway"] == "restarted (password changed)"
    assert platform.predict().status_code == 200  # the README's curl: the generated password again
    assert platform.status()["gateway"]["restarts"] == 0  # the healer did not restart it on its own


def test_status_after_supervisord_is_killed_tells_the_truth(platform):
    """D29: with supervisord killed, `status` said every component was down while they still served."""
    supervisord = int((platform.root / ".mlops" / "local" / "supervisor" / "supervisord.pid").read_text())
    os.kill(supervisord, signal.SIGKILL)
    psutil.wait_procs([psutil.Process(supervisord)], timeout=10) if psutil.pid_exists(supervisord) else None
    result = platform.mlops("status", "--json")
    assert result.returncode == 1  # nothing heals them now: not a healthy platform
    status = {c["component"]: c for c in json.loads(result.stdout)["components"]}
    assert status["supervisor"]["healthy"] is False and "mlops up" in status["supervisor"]["detail"]
    for name in ("mlflow", "drift", "gateway", "predictor-v1"):
        assert status[name]["healthy"] and status[name]["pid"], status[name]
        assert "unsupervised" in status[name]["detail"] and "supervisord is gone" in status[name]["detail"]
    assert platform.predict().status_code == 200


def test_down_then_up_serves_the_last_deployed_version(platform):
    """D30: after `down` then `up` the gateway answered 503 "no model is deployed yet", with no hint."""
    platform.ok("down")
    result = platform.ok("up", "--json")
    steps = {s["name"]: s["action"] for s in json.loads(result.stdout)["steps"]}
    assert steps.get("predictor-v1") == "started" and steps.get("gateway") in ("started", "switched"), steps
    assert platform.predict().json()["model_version"] == "1"
    status = platform.status()
    assert "supervisor" not in status and all(c["healthy"] for c in status.values()), status


def test_predict_file_writes_scored_csv(platform):
    src = platform.root / "reviews.csv"
    src.write_text("review,id\ngreat drug,1\nawful side effects,2\nworked fine,3\n")
    platform.ok("predict", "--file", str(src), "--text-col", "review", "-o", str(platform.root / "scored.csv"))
    scored = (platform.root / "scored.csv").read_text().splitlines()
    assert scored[0] == "review,id,label,confidence,model_version" and len(scored) == 4


def test_down_leaves_no_process_behind(platform):
    pids = [c["pid"] for c in platform.status().values()]
    supervisord = int((platform.root / ".mlops" / "local" / "supervisor" / "supervisord.pid").read_text())
    pids.append(supervisord)
    assert all(pids)
    platform.ok("down")
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    for name in ("gateway", "mlflow", "drift"):
        with socket.socket() as s:
            s.bind(("127.0.0.1", platform.ports[name]))  # free again
    assert (platform.root / ".mlops" / "mlflow").exists()  # data kept without --purge
    assert platform.status() == {}
    # D36: the healer ticked into supervisord's shutdown and logged SHUTDOWN_STATE tracebacks.
    healer_log = (platform.root / ".mlops" / "logs" / "healer.log").read_text()
    assert "Traceback" not in healer_log and "healer tick failed" not in healer_log

    refused = platform.mlops("down", "--purge")  # no terminal to ask on: refuse rather than delete
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert (platform.root / ".mlops" / "mlflow").exists()
    platform.ok("down", "--purge", "--yes")
    assert not (platform.root / ".mlops").exists()


def test_taken_ports_are_all_reported_before_anything_starts(tmp_path):
    """Defect 10: with the gateway's port taken, `up` used to start MLflow and drift before failing,
    and `doctor` called the taken port "missing"."""
    blockers = []
    for _ in range(2):
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        blockers.append(blocker)
    gateway, drift = (b.getsockname()[1] for b in blockers)
    mlflow = free_port()
    (tmp_path / "mlops.toml").write_text(f"[local]\ngateway_port = {gateway}\nmlflow_port = {mlflow}\n"
                                         f"drift_port = {drift}\n")
    try:
        result = run_subprocess_cli("up", cwd=tmp_path, timeout=300)
        doctor = run_subprocess_cli("doctor", "--json", cwd=tmp_path, timeout=120)
    finally:
        for blocker in blockers:
            blocker.close()
    assert result.returncode == 2 and "Traceback" not in result.stderr
    for name, port in (("gateway", gateway), ("drift", drift)):
        assert f"port {port} for {name} is taken by" in result.stderr and "pid" in result.stderr
    assert "nothing was started" in result.stderr
    # Every port is checked before anything starts: nothing recorded, no supervisor, MLflow never started.
    table = tmp_path / ".mlops" / "local" / "processes.json"
    assert not table.exists() or json.loads(table.read_text())["processes"] == {}
    assert not (tmp_path / ".mlops" / "local" / "supervisor" / "supervisord.pid").exists()
    assert not (tmp_path / ".mlops" / "logs" / "mlflow.log").exists()
    with socket.socket() as s:
        s.bind(("127.0.0.1", mlflow))

    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    taken = checks[f"port {gateway} (gateway)"]
    assert taken["ok"] is False and taken["required"] is True and "taken by" in taken["detail"], taken
    assert checks[f"port {mlflow} (mlflow)"]["ok"] is True
    assert doctor.returncode != 0


def test_rollback_goes_to_the_last_different_version(project, cli):
    """D8: `deploy --version 1; deploy --version 2; deploy --version 2; deploy --rollback` "rolled back" to
    2 (history 1, 2, 2: the entry before the last). Such a history is what an older mlops recorded, and what
    redeploying the serving version with other [serving] settings records now. No registry here: the
    version that --rollback resolves is named in the error."""
    table = project / ".mlops" / "local" / "processes.json"
    table.parent.mkdir(parents=True)
    table.write_text(json.dumps({"processes": {}, "deployments": [
        {"version": v, "component": f"predictor-v{v}", "at": 0.0} for v in ("1", "2", "2")]}))
    result = cli("deploy", "--rollback")
    assert result.exit_code == 2 and "has no version 1" in result.stderr, result.stderr
    table.write_text(json.dumps({"processes": {}, "deployments": [
        {"version": "2", "component": "predictor-v2", "at": 0.0}] * 2}))
    only = cli("deploy", "--rollback")
    assert only.exit_code == 2 and "only version 2 was ever deployed" in only.stderr, only.stderr


def test_status_probes_components_that_outlive_a_killed_supervisord(project, cli):
    """D29 in seconds: a real supervisord running one real HTTP server as a recorded component; after
    `kill -9` of supervisord the server still answers, and `status` says so instead of "not running"."""
    import sys

    from mlops_cli.platform.processes import ProcessRecord, ProcessTable
    from mlops_cli.platform.supervisor import Program, Supervisor

    state, port = project / ".mlops", free_port()
    sup = Supervisor(state, state / "logs")
    # Quiet per request, like our services' probes: once supervisord is gone, its end of the output pipe
    # is closed and a write there fails (http.server's own access line would break every answer).
    server = project / "quiet_server.py"
    server.write_text("import http.server as h, sys\nh.SimpleHTTPRequestHandler.log_message = lambda *a: None\n"
                      "h.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), h.SimpleHTTPRequestHandler).serve_forever()\n")
    cmd = [sys.executable, str(server), str(port)]
    sup.write_program(Program("web", cmd, state / "logs" / "web.log", project))
    ProcessTable(state).put(ProcessRecord("web", port, f"http://127.0.0.1:{port}", cmd, str(state / "logs" / "web.log"),
                                          time.time(), {"health": "/"}))
    sup.start({})
    try:
        deadline = time.monotonic() + 60
        while not _answers(f"http://127.0.0.1:{port}/") and time.monotonic() < deadline:
            time.sleep(0.2)
        supervised = json.loads(cli("status", "--json").stdout)["components"]
        assert [(c["component"], c["healthy"]) for c in supervised] == [("web", True)]
        supervisord = int(sup.pidfile.read_text())
        os.kill(supervisord, signal.SIGKILL)
        psutil.wait_procs([psutil.Process(supervisord)], timeout=10)
        result = cli("status", "--json")
        assert result.exit_code == 1, result.stderr
        status = {c["component"]: c for c in json.loads(result.stdout)["components"]}
        assert status["supervisor"]["healthy"] is False and "mlops up" in status["supervisor"]["detail"]
        web = status["web"]
        assert web["healthy"] and web["pid"] and web["uptime_s"] is not None, web
        assert "supervisord is gone" in web["detail"] and "unsupervised" in web["detail"]
        table = cli("status").stdout
        assert "supervisord is not running" in " ".join(table.split())
    finally:
        sup.shutdown(10)  # kills the orphaned server too


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False

"""Fault injection on the running local platform, each under loopback load with a measured outcome.

One platform (tiny random BERT) is shared by the tests in file order, as in test_local_platform.py:
Ctrl-C during `up`, Ctrl-C during `train` (its re-run trains the model that is registered and served),
then each fault, then fuzzing, overload and soak, and finally Ctrl-C during `down`. Every load loop is
bounded in requests and seconds. Version switch and rollback under load are in test_local_platform.py,
which has two versions to switch between.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

from ..support import eventually, local_platform

pytestmark = pytest.mark.slow

GATEWAY_TIMEOUT_S = 2.0
RESTART_BOUND_S = 120.0  # README "Self-healing": a killed component serves again within this
MAX_RESTARTS = 2  # [local].max_restarts: a third exit within the window marks the component failed


@pytest.fixture(scope="module")
def platform(tmp_path_factory, tiny_base_model):
    with local_platform(
        tmp_path_factory.mktemp("reliability"), tiny_base_model, "reliability",
        gateway={"timeout_s": GATEWAY_TIMEOUT_S, "prediction_log_max_bytes": 16384, "prediction_log_backups": 2},
        local={"restart_backoff_s": 0.25, "health_interval_s": 0.5, "max_restarts": MAX_RESTARTS},
    ) as p:
        p.ok("data", "prepare")  # training happens in the Ctrl-C test's re-run, which the deploy test serves
        yield p


def _wait_interrupted(proc: subprocess.Popen, ready, timeout_s: float = 120) -> tuple[int, str]:
    """Ctrl-C once `ready(stderr so far)` holds; returns the exit code and everything it wrote to stderr."""
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout_s
    while not ready("".join(err)) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"finished before it could be interrupted: {''.join(err)}"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    reader.join(timeout=10)
    return proc.returncode, "".join(err)


def test_ctrl_c_during_up_leaves_nothing_then_up_converges(platform):
    sup = platform.supervisor
    # Interrupt once supervisord runs and MLflow is starting: the slowest moment to be half-done.
    code, err = _wait_interrupted(platform.popen("up"), lambda err: sup.running() and "mlflow" in sup.info())
    assert code == 130 and "interrupted" in err and "Traceback" not in err, err
    assert not sup.running() and sup.orphans() == []
    assert sup.recorded_programs() == []
    table = json.loads((platform.root / ".mlops" / "local" / "processes.json").read_text())
    assert table["processes"] == {}
    for name in ("mlflow", "gateway", "drift"):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", platform.ports[name]))

    platform.ok("up")
    status = platform.status()
    assert {"mlflow", "drift", "gateway"} <= set(status) and all(c["healthy"] for c in status.values()), status


def _running_runs(root: Path) -> int:
    import sqlite3

    db = root / ".mlops" / "mlflow" / "mlflow.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return conn.execute("select count(*) from runs where status = 'RUNNING'").fetchone()[0]


def test_ctrl_c_during_train_leaves_nothing_half_written_then_train_works(platform):
    runs_dir = platform.root / ".mlops" / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    before = set(runs_dir.iterdir())
    proc = platform.popen("train", "--log", "--max-steps", "400", "--threads", "1")
    # Interrupt once the step loop runs: its progress line says so (stderr is not a terminal). Earlier
    # it can land in the imports of "loading base model": seen once as exit -2 right after the CLI's own
    # "interrupted" message (CPython exits by SIGINT when a KeyboardInterrupt ever escaped code run through
    # its PyRun_* API, caught later or not: run_eval_code_obj in Python/pythonrun.c, Py_RunMain in
    # Modules/main.c); or in MLflow's sqlite commit, where MLflow logs a traceback itself.
    code, err = _wait_interrupted(proc, lambda err: re.search(r"^training \S+: started", err, re.M))
    assert code == 130 and "Traceback" not in err and "interrupted at epoch" in err, err
    assert set(runs_dir.iterdir()) == before  # no run directory, no .partial staging left behind
    assert _running_runs(platform.root) == 0  # the MLflow run was ended (KILLED), not left RUNNING
    platform.ok("train", "--log", "--max-steps", "1")
    assert len(set(runs_dir.iterdir()) - before) == 1


def test_register_and_deploy(platform):
    """The run the re-run above trained is the one registered and served: interrupted work left nothing
    that gets in the way of the next train, register or deploy."""
    platform.ok("register", "--alias", "champion")
    platform.ok("deploy", "--version", "1")
    assert platform.predict().json()["model_version"] == "1"


def _served_weights(platform) -> Path:
    """The weights file the serving predictor loaded: the ONNX export or the fp32 safetensors."""
    records = json.loads((platform.root / ".mlops" / "local" / "processes.json").read_text())["processes"]
    cmd = next(r["cmd"] for name, r in records.items() if name.startswith("predictor"))
    model_dir = Path(cmd[cmd.index("--model-dir") + 1])
    return next(p for p in sorted(model_dir.rglob("*")) if p.suffix in (".onnx", ".safetensors"))


@contextlib.contextmanager
def _corrupted(weights: Path):
    """The file overwritten with garbage (a bad disk, a half-finished copy), restored afterwards."""
    backup = weights.with_name(weights.name + ".bak")
    shutil.copy2(weights, backup)
    weights.write_bytes(b"not a model file")
    try:
        yield weights
    finally:
        backup.replace(weights)


def test_crash_looping_predictor_ends_failed_with_its_log_tail_then_up_restarts_it(platform):
    """A component that keeps crashing is marked failed with the tail of its log, not restarted forever.

    The served model file goes bad under the running predictor, which then dies: every restart exits
    loading it. After [local].max_restarts restarts within the window the healer gives up; `mlops
    status` says so, with the log, and exits 1; once the file is back `mlops up` starts it again.
    """
    from mlops_cli.services.healer import read_health

    name = "predictor-v1"
    status = platform.status()
    assert status[name]["restarts"] == 0 and status[name]["healthy"], status[name]  # a fresh deploy
    sup = platform.supervisor
    with _corrupted(_served_weights(platform)) as weights:
        os.kill(status[name]["pid"], signal.SIGKILL)

        def health():  # what the healer last wrote about it
            return read_health(platform.root / ".mlops").get(name)

        eventually(lambda: health() is not None and health().state == "failed",
                   lambda: f"not failed {RESTART_BOUND_S} s after the kill: {health()}", RESTART_BOUND_S, 0.25)
        given_up = sup.info()[name]
        # Not restarted forever: the next backoff (0.25 s, doubled per restart) passes twice over.
        time.sleep(2 * 0.25 * 2 ** MAX_RESTARTS)
        assert sup.info()[name]["start"] == given_up["start"] and sup.info()[name]["statename"] == "EXITED"
        as_json = platform.mlops("status", "--json")
        table = platform.mlops("status")
        assert platform.predict().status_code == 503
    assert as_json.returncode == 1 and table.returncode == 1, (as_json, table)
    failed = {c["component"]: c for c in json.loads(as_json.stdout)["components"]}[name]
    print(f"\ncrash loop: {failed['restarts']} restarts, then {failed['detail']}; log ends {failed['log_tail'][-200:]!r}")
    assert failed["state"] == "failed" and not failed["healthy"] and failed["pid"] is None, failed
    assert failed["restarts"] == MAX_RESTARTS and failed["last_exit"] == "exit status 1", failed
    assert failed["last_exit_code"] == 1 and failed["detail"].startswith(f"failed: {MAX_RESTARTS} restarts within ")
    assert weights.name in failed["log_tail"], failed["log_tail"]  # the cause, from the predictor's own log
    assert f"{MAX_RESTARTS} (last: exit status 1" in table.stdout and "failed: " in table.stdout, table.stdout
    cause = next(line for line in failed["log_tail"].splitlines() if weights.name in line)
    assert cause in table.stdout, table.stdout  # the log's lines whole, not cut to fit a column

    steps = {s["name"]: s["action"] for s in json.loads(platform.ok("up", "--json").stdout)["steps"]}
    assert steps[name] == "started", steps
    assert platform.predict().json()["model_version"] == "1"


def _kill_9_under_load(platform, pid: int, back) -> tuple:
    """`kill -9 pid` once 4 clients are served; wait until `back(samples, killed_at)` holds, then for 100
    more answers. Returns the load, when the kill was, and when the platform was back (None: never)."""
    with platform.load(clients=4, max_seconds=RESTART_BOUND_S + 30) as load:
        assert load.wait_for(lambda s: sum(x.status == 200 for x in s) >= 20, 30)
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        healed = load.wait_for(lambda s: back(s, killed_at), RESTART_BOUND_S)
        back_at = time.monotonic()
        if healed:
            assert load.wait_for(lambda s: sum(x.start > back_at for x in s) >= 100, 30), "too few answers once back"
    return load, killed_at, back_at if healed else None


def test_predictor_kill_9_under_load_is_503_then_200_unaided(platform):
    victim = platform.status()["predictor-v1"]
    load, killed_at, back_at = _kill_9_under_load(
        platform, victim["pid"],
        lambda s, killed_at: any(x.start > killed_at and x.status == 200 and x.latency < 1.5 for x in s[-8:])
        and s[-1].status == 200)
    after = [s for s in load.samples if s.start > killed_at]
    health = (platform.root / ".mlops" / "local" / "health.json").read_text()
    assert back_at, f"still failing {RESTART_BOUND_S} s after the kill: {after[-3:]}\nhealth: {health}"
    outage = [s for s in after if s.status != 200]
    print(f"\npredictor kill -9: {len(outage)} x 503 over {back_at - killed_at:.1f} s, then 200")
    assert outage and {s.status for s in outage} == {503}, {(s.status, s.error) for s in outage}
    assert all(s.latency <= GATEWAY_TIMEOUT_S + 1.0 for s in outage)  # 503 within the timeout, never a hang
    assert {s.error for s in outage} <= {"predictor_unavailable", "predictor_timeout"}
    assert load.failures(after=back_at) == []
    status = platform.status()["predictor-v1"]
    assert status["restarts"] == victim["restarts"] + 1 and status["last_exit_code"] == -9 and status["healthy"]


def test_gateway_kill_9_restarts_and_loses_nothing_once_back(platform):
    gateway = platform.status()["gateway"]
    load, killed_at, back_at = _kill_9_under_load(
        platform, gateway["pid"],
        lambda s, killed_at: len(s) > 4 and all(x.status == 200 and x.start > killed_at for x in s[-4:]))
    assert back_at, f"gateway not back: {load.samples[-3:]}"
    lost = [s for s in load.samples if s.start > killed_at and s.status != 200]
    print(f"\ngateway kill -9: back after {back_at - killed_at:.1f} s; {len(lost)} requests refused meanwhile")
    assert load.failures(after=back_at) == []
    assert {s.version for s in load.samples if s.status == 200 and s.start > back_at} == {"1"}  # upstream restored
    status = platform.status()["gateway"]
    assert status["restarts"] == 1 and status["pid"] != gateway["pid"] and status["detail"] == "predictor ready"


@pytest.mark.parametrize("outage", ["refused", "hung"])
def test_registry_down_during_deploy_and_register_is_clear_and_serving_goes_on(platform, outage):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    if outage == "hung":
        listener.listen(0)  # connects, never answers: only a timeout from config ends the wait
    port = listener.getsockname()[1]
    if outage == "refused":
        listener.close()
    env = {"MLOPS_REGISTRY__TRACKING_URI": f"http://127.0.0.1:{port}", "MLOPS_REGISTRY__CONNECT_TIMEOUT_S": "2"}
    predictor_pid = platform.status()["predictor-v1"]["pid"]
    def timed(command: tuple[str, ...]) -> tuple[subprocess.CompletedProcess, float]:
        start = time.monotonic()
        return platform.mlops(*command, env=env, timeout=120), time.monotonic() - start

    commands = (("deploy", "--version", "1"), ("register",))
    try:
        # Both at once (two users, say): each must still fail on its own, clearly and in time.
        with platform.load(clients=2, max_seconds=120) as load, ThreadPoolExecutor(len(commands)) as pool:
            results = list(pool.map(timed, commands))
    finally:
        listener.close()
    for command, (result, took) in zip(commands, results):
        assert result.returncode in (1, 2), result
        assert "Traceback" not in result.stderr and f"127.0.0.1:{port}" in result.stderr, result.stderr
        assert took < 60, f"`mlops {command[0]}` took {took:.0f} s against a {outage} registry"
    assert load.samples and load.failures() == []
    assert platform.status()["predictor-v1"]["pid"] == predictor_pid


def test_model_that_fails_to_load_keeps_the_previous_version_serving(platform):
    # The serving version with other [serving] settings: a fresh predictor beside it (the same version with
    # the same settings is a no-op since issue 26, D27).
    other = {"MLOPS_SERVING__HTTP_NICE": "5"}
    with _corrupted(_served_weights(platform)) as weights, platform.load(clients=2, max_seconds=120) as load:
        result = platform.mlops("deploy", "--version", "1", timeout=200, env=other)
    assert result.returncode == 1 and "Traceback (most recent call last)" not in result.stderr.split("\n")[0]
    assert "exited during start-up" in result.stderr and "version 1 keeps serving" in result.stderr
    assert weights.name in result.stderr or weights.suffix[1:] in result.stderr.lower(), result.stderr  # the cause
    assert load.samples and load.failures() == []
    assert [n for n in platform.status() if n.startswith("predictor")] == ["predictor-v1"]


def test_killed_supervisor_and_predictor_then_up_restores_the_deployed_version(platform):
    """Defect 5: after the predictor died, `up` said "everything is already up" and served nothing."""
    status = platform.status()
    predictor = next(n for n in status if n.startswith("predictor"))
    supervisord = int((platform.root / ".mlops" / "local" / "supervisor" / "supervisord.pid").read_text())
    os.kill(supervisord, signal.SIGKILL)
    os.kill(status[predictor]["pid"], signal.SIGKILL)
    psutil.wait_procs([psutil.Process(supervisord)], timeout=10) if psutil.pid_exists(supervisord) else None
    down = platform.status()
    assert not down[predictor]["healthy"] and "supervisor is not running" in down[predictor]["detail"]
    result = platform.ok("up", "--json")
    steps = {s["name"]: s["action"] for s in json.loads(result.stdout)["steps"]}
    assert steps[predictor] == "started", steps
    assert platform.predict().json()["model_version"] == "1"
    after = platform.status()
    assert all(c["healthy"] for c in after.values()), after
    # The new healer read a health file that called the old processes healthy: the new ones, refusing
    # probes while they started, were restarted by it as "unhealthy" (seen 2026-11-27: mlflow, predictor).
    assert {n: c["restarts"] for n, c in after.items()} == {n: c["restarts"] for n, c in status.items()}


def test_fuzz_every_operation_against_the_openapi_schema(platform):
    """schemathesis: valid and invalid requests to every documented operation, with auth.

    No answer >= 500, and every 4xx has our JSON error body. A PUT /admin/upstream that succeeds is
    undone at once (the gateway accepts only the platform's own predictors anyway: issue 26, D16).
    """
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode

    assert httpx.get(f"{platform.gateway}/openapi.json").status_code == 401  # behind the same auth
    assert httpx.get(f"{platform.gateway}/docs").status_code == 401
    assert httpx.get(f"{platform.gateway}/docs", auth=platform.auth).status_code == 200
    schema = schemathesis.openapi.from_url(f"{platform.gateway}/openapi.json", auth=platform.auth)
    operations = {f"{op.method.upper()} {op.path}": op for op in (r.ok() for r in schema.get_all_operations())}
    assert {"POST /predict", "POST /predict/batch", "GET /healthz", "PUT /admin/upstream"} <= set(operations)
    served = httpx.get(f"{platform.gateway}/admin/upstream", auth=platform.admin_auth).json()
    strategies = []
    for op in operations.values():
        strategies.append(op.as_strategy(generation_mode=GenerationMode.NEGATIVE))
        strategies.append(op.as_strategy(generation_mode=GenerationMode.POSITIVE))
    seen: dict[str, set[int]] = {}
    problems: list[str] = []

    @settings(max_examples=150, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=st.one_of(strategies))
    def fuzz(case):
        admin = case.operation.path.startswith("/admin/")
        response = case.call(base_url=platform.gateway, auth=platform.admin_auth if admin else platform.auth,
                             timeout=GATEWAY_TIMEOUT_S + 5)
        label = f"{case.operation.method.upper()} {case.operation.path}"
        if label == "PUT /admin/upstream" and response.status_code == 200:
            restored = httpx.put(f"{platform.gateway}/admin/upstream", auth=platform.admin_auth, json=served, timeout=10)
            assert restored.status_code == 200
        seen.setdefault(label, set()).add(response.status_code)
        if response.status_code >= 500:
            problems.append(f"{label} -> {response.status_code} {response.text[:200]} for {case.body!r:.200}")
        elif response.status_code >= 400:
            try:
                error = response.json()["error"]
                assert isinstance(error["code"], str) and error["message"]
            except (ValueError, KeyError, TypeError, AssertionError):
                problems.append(f"{label} -> {response.status_code} without a JSON error body: {response.text[:200]}")

    try:
        fuzz()
    finally:
        httpx.put(f"{platform.gateway}/admin/upstream", auth=platform.admin_auth, json=served, timeout=10)
    print(f"\nschemathesis: {sum(len(v) for v in seen.values())} (operation, status) pairs: {seen}")
    assert problems == []
    assert set(seen) == set(operations), f"operations never exercised: {set(operations) - set(seen)}"
    assert 200 in seen["POST /predict"] and {413, 422} & seen["POST /predict"]
    assert platform.predict().status_code == 200


def test_overload_sheds_or_serves_within_budget(platform):
    """Concurrency far above capacity for a bounded time: no 500s, nothing slower than the budget.

    Load shedding (503 + Retry-After) is the performance issue's; here it is held to its contract. Was
    xfail until the gateway had its own admission limit (services/admission.py): at load 15 on 2 cores
    nothing was shed and latencies reached 5.0 s, since only the predictor's queue shed.
    """
    budget = GATEWAY_TIMEOUT_S + 1.0  # the predictor call's timeout, plus the gateway's own work
    with platform.load(clients=48, max_requests=4000, max_seconds=10, pause_s=0.0, timeout_s=budget + 5) as load:
        time.sleep(10)  # the clients stop at 10 s or 4000 requests
    statuses = {s.status for s in load.samples}
    ok = sorted(s.latency for s in load.samples if s.status == 200)
    p99 = ok[int(len(ok) * 0.99) - 1] if ok else float("nan")
    print(f"\noverload: {len(load.samples)} requests, statuses {statuses}, p99 of accepted {p99:.2f} s")
    assert len(ok) > 20 and len(load.samples) > 200
    assert statuses <= {200, 503, 504}, statuses
    assert all(s.latency <= budget for s in load.samples), max(s.latency for s in load.samples)
    assert p99 <= budget
    shed = [s for s in load.samples if s.status == 503]
    assert all(s.retry_after or s.error == "predictor_unavailable" for s in shed)
    assert platform.predict().status_code == 200


def _rss_and_fds(pid: int) -> tuple[int, int]:
    proc = psutil.Process(pid)
    return proc.memory_info().rss, proc.num_fds()


def test_soak_memory_and_fds_stay_flat_and_the_prediction_log_rotates(platform):
    status = platform.status()
    pids = {"gateway": status["gateway"]["pid"],
            "predictor": next(c["pid"] for n, c in status.items() if n.startswith("predictor"))}
    log = platform.root / ".mlops" / "predictions.jsonl"
    rotated_before = log.with_name(log.name + ".1").stat().st_mtime if log.with_name(log.name + ".1").exists() else 0
    samples: dict[str, list[tuple[int, int]]] = {name: [] for name in pids}
    with platform.load(clients=4, max_requests=6000, max_seconds=40, pause_s=0.02) as load:
        time.sleep(5)  # warm-up: allocator pools, connection pools
        for _ in range(14):
            for name, pid in pids.items():
                samples[name].append(_rss_and_fds(pid))
            time.sleep(2.5)
    assert load.failures() == [] and len(load.samples) > 200
    for name, series in samples.items():
        rss = [r for r, _ in series]
        fds = [f for _, f in series]
        first, last = sum(rss[:4]) / 4, sum(rss[-4:]) / 4
        print(f"\nsoak {name}: {len(load.samples)} requests, RSS {first / 2**20:.1f} -> {last / 2**20:.1f} MiB, "
              f"fds {min(fds)}..{max(fds)}")
        assert last - first < max(0.10 * first, 16 * 2**20), f"{name} RSS grew {(last - first) / 2**20:.1f} MiB"
        assert max(fds) - min(fds) <= 8 and fds[-1] <= fds[0] + 4, f"{name} fds {fds}"
    rotated = log.with_name(log.name + ".1")
    assert rotated.exists() and rotated.stat().st_mtime > rotated_before
    assert log.stat().st_size <= 16384 and not log.with_name(log.name + ".3").exists()  # 2 backups kept


def test_prediction_log_failures_are_a_metric(platform):
    metrics = httpx.get(f"{platform.gateway}/metrics").text
    assert "mlops_prediction_log_write_failures_total 0.0" in metrics


def test_ctrl_c_during_down_then_down_again_stops_everything(platform):
    sup = platform.supervisor
    code, err = _wait_interrupted(platform.popen("down"), lambda err: not sup.running())
    assert code in (0, 130) and "Traceback" not in err, err
    platform.ok("down")
    assert not sup.running() and sup.orphans() == []
    assert platform.status() == {}
    for name in ("mlflow", "gateway", "drift"):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", platform.ports[name]))

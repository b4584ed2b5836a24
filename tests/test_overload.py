"""Overload: more concurrent requests than the predictor may queue get a fast 503 with Retry-After,
from the predictor and through the gateway, and never a 500."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest

from .support import free_port
from .drift_support import Service, build_classifier, wait_http

PASSWORD = "overload-test-password"


@pytest.fixture(scope="module")
def serving(tmp_path_factory, tiny_base_model):
    """A real predictor that may hold one text in its queue (one per pass), and the gateway before it."""
    root = tmp_path_factory.mktemp("overload")
    classifier = build_classifier(tiny_base_model, root / "classifier")
    (root / "mlops.toml").write_text(f'[gateway]\nprediction_log = "{root}/predictions.jsonl"\ntimeout_s = 30\n')
    env = {"MLOPS_CONFIG": str(root / "mlops.toml")}
    p_port, g_port = free_port(), free_port()
    predictor = Service("predictor", ["-m", "models.predictor", "--model-dir", str(classifier), "--runtime", "torch",
                                      "--http-port", str(p_port), "--host", "127.0.0.1", "--batch-size", "1",
                                      "--max-queue", "1", "--threads", "1", "--http-nice", "5"], root, env, root)
    gateway = None
    try:
        wait_http(f"http://127.0.0.1:{p_port}/v2/health/ready", predictor.proc, timeout=120)
        gateway = Service("gateway", ["-m", "mlops_cli.services.gateway", "--port", str(g_port),
                                      "--predictor-url", f"http://127.0.0.1:{p_port}", "--model-version", "1"],
                          root, {**env, "MLOPS_GATEWAY_PASSWORD": PASSWORD}, root)
        wait_http(f"http://127.0.0.1:{g_port}/healthz", gateway.proc)
        yield f"http://127.0.0.1:{p_port}", f"http://127.0.0.1:{g_port}", predictor.proc.pid, gateway.proc.pid
    finally:
        for svc in (gateway, predictor):
            if svc is not None:
                svc.stop()


async def burst(url: str, body: dict, n: int, auth=None) -> list[httpx.Response]:
    text = "The pharmacist said to take it with food, which I did, and it worked. " * 6
    async with httpx.AsyncClient(timeout=30, auth=auth, limits=httpx.Limits(max_connections=n)) as client:
        return await asyncio.gather(*(client.post(url, json=body(text)) for _ in range(n)))


def check_shed(responses: list[httpx.Response]) -> list[httpx.Response]:
    statuses = sorted({r.status_code for r in responses})
    assert set(statuses) <= {200, 503}, statuses  # never a 500, never a timeout
    shed = [r for r in responses if r.status_code == 503]
    assert shed and len(shed) < len(responses), statuses
    for r in shed:
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]
    return shed


def test_predictor_sheds_with_503_and_retry_after(serving):
    predictor, *_ = serving
    responses = asyncio.run(burst(f"{predictor}/v1/models/sentiment:predict", lambda t: {"instances": [t]}, 48))
    check_shed(responses)


def test_gateway_passes_the_shed_on_and_serves_the_rest(serving):
    _, gateway, *_ = serving
    responses = asyncio.run(burst(f"{gateway}/predict", lambda t: {"text": t}, 48, auth=("admin", PASSWORD)))
    shed = check_shed(responses)
    assert all(r.json()["error"]["code"] == "overloaded" for r in shed)
    assert all(r.json()["label"] in {"Negative", "Positive"} for r in responses if r.status_code == 200)
    # Afterwards, one at a time, everything is served again.
    ok = httpx.post(f"{gateway}/predict", json={"text": "fine"}, auth=("admin", PASSWORD), timeout=30)
    assert ok.status_code == 200


def thread_nice(pid: int) -> dict[int, int]:
    """nice of every thread of a process (Linux: /proc/PID/task/TID/stat, field 19)."""
    nice = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        nice[int(task.name)] = int(fields[16])
    return nice


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="nice is per thread on Linux only")
def test_the_servers_yield_the_cpu_to_the_model(serving):
    predictor, gateway, predictor_pid, gateway_pid = serving
    httpx.post(f"{predictor}/v1/models/sentiment:predict", json={"instances": ["warm"]}, timeout=30)
    threads = thread_nice(predictor_pid)
    assert threads[predictor_pid] == 5  # the HTTP server's thread, as --http-nice says (the model's: test_micro_batching)
    # The gateway lowers itself by [gateway].nice (default 10) before any thread starts.
    assert set(thread_nice(gateway_pid).values()) == {10}

"""The predictor's micro-batcher: concurrent requests share forward passes and get their own rows back."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from models.batcher import MicroBatcher


def test_concurrent_requests_are_batched_and_answered_in_order():
    calls: list[list[str]] = []

    def infer(texts):
        calls.append(list(texts))
        time.sleep(0.05)
        return [t.upper() for t in texts], [len(t) for t in texts]

    async def scenario():
        batcher = MicroBatcher(infer, max_batch=8)
        requests = [[f"r{i}a", f"r{i}b"] if i % 2 else [f"r{i}"] for i in range(10)]
        results = await asyncio.gather(*(batcher.submit(texts) for texts in requests))
        return requests, results

    requests, results = asyncio.run(scenario())
    for texts, (upper, lengths) in zip(requests, results):
        assert upper == [t.upper() for t in texts] and lengths == [len(t) for t in texts]
    assert len(calls) < len(requests)  # some requests shared a pass
    assert all(len(c) <= 8 + 1 for c in calls)


def test_inference_runs_off_the_event_loop():
    loop_thread: list[int] = []
    infer_thread: list[int] = []

    def infer(texts):
        infer_thread.append(threading.get_ident())
        return texts, texts

    async def scenario():
        loop_thread.append(threading.get_ident())
        await MicroBatcher(infer, max_batch=4).submit(["x"])

    asyncio.run(scenario())
    assert infer_thread[0] != loop_thread[0]


def test_a_failing_pass_fails_its_requests_and_the_next_one_works():
    state = {"fail": True}

    def infer(texts):
        if state["fail"]:
            state["fail"] = False
            raise RuntimeError("boom")
        return texts, texts

    async def scenario():
        batcher = MicroBatcher(infer, max_batch=4)
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit(["a"])
        return await batcher.submit(["b"])

    assert asyncio.run(scenario()) == (["b"], ["b"])


def test_passes_are_sorted_by_length_and_each_caller_gets_its_own_rows():
    passes: list[list[str]] = []

    def infer(texts):
        passes.append(list(texts))
        time.sleep(0.02)
        return [f"row:{t}" for t in texts], [len(t) for t in texts]

    async def scenario():
        batcher = MicroBatcher(infer, max_batch=4, max_wait_ms=0)
        # Lengths interleaved across requests, so sorting must move texts between callers' slots.
        requests = [["x" * (30 - i), "y" * (i + 1)] if i % 2 else ["z" * (17 + i)] for i in range(12)]
        results = await asyncio.gather(*(batcher.submit(texts) for texts in requests))
        return requests, results

    requests, results = asyncio.run(scenario())
    for texts, (rows, lengths) in zip(requests, results):
        assert rows == [f"row:{t}" for t in texts] and lengths == [len(t) for t in texts]
    assert all(len(p) <= 4 for p in passes)
    assert all([len(t) for t in p] == sorted(len(t) for t in p) for p in passes)
    arrival = [t for texts in requests for t in texts]
    assert any(p != [t for t in arrival if t in p] for p in passes), "no pass was reordered: sorting untested"


def test_a_full_queue_refuses_at_once_with_retry_after():
    from models.batcher import Overloaded

    def infer(texts):
        time.sleep(0.05)
        return texts, texts

    async def scenario():
        batcher = MicroBatcher(infer, max_batch=1, max_queue=3)
        # All ten arrive before the worker takes anything: three fit in the queue, seven are refused.
        return await asyncio.gather(*(batcher.submit([f"t{i}"]) for i in range(10)), return_exceptions=True)

    results = asyncio.run(scenario())
    refused = [r for r in results if isinstance(r, Overloaded)]
    assert [r for r in results if isinstance(r, tuple)] == [([f"t{i}"], [f"t{i}"]) for i in range(3)]
    assert len(refused) == 7 and all(r.retry_after_s >= 1 and "queue is full" in str(r) for r in refused)


def test_a_request_over_the_latency_budget_is_refused():
    from models.batcher import Overloaded

    def infer(texts):
        return texts, texts

    async def scenario():
        batcher = MicroBatcher(infer, max_batch=2, latency_budget_s=0.2)
        await batcher.submit(["warm-up"])
        batcher.seconds_per_text = 0.05  # as if measured: 4 texts fit in the 0.2 s budget
        return await asyncio.gather(*(batcher.submit([f"t{i}"]) for i in range(12)), return_exceptions=True)

    results = asyncio.run(scenario())
    refused = [r for r in results if isinstance(r, Overloaded)]
    assert sum(isinstance(r, tuple) for r in results) == 4
    assert len(refused) == 8 and all("latency budget of 0.2 s" in str(r) and r.retry_after_s >= 1 for r in refused)


def test_a_queue_older_than_the_budget_refuses_new_requests():
    """Whatever the estimate says: once the oldest waiting request is past the budget, shed."""
    from models.batcher import Overloaded

    release = threading.Event()

    def infer(texts):
        release.wait(5)
        return texts, texts

    async def scenario():
        batcher = MicroBatcher(infer, max_batch=1, latency_budget_s=1.0)
        first = asyncio.ensure_future(batcher.submit(["running"]))
        await asyncio.sleep(0.05)  # the worker has taken it and blocks
        second = asyncio.ensure_future(batcher.submit(["queued"]))
        await asyncio.sleep(0)
        batcher._pending[0].enqueued -= 10  # as if it had waited 10 s
        with pytest.raises(Overloaded, match="oldest queued request has waited"):
            await batcher.submit(["refused"])
        release.set()
        return await first, await second

    assert asyncio.run(scenario()) == ((["running"], ["running"]), (["queued"], ["queued"]))


YIELD_SCRIPT = """
import os, types
from models.batcher import MicroBatcher
from models.predictor import yield_to_model
batcher = MicroBatcher(lambda texts: (texts, texts), max_batch=4)
yield_to_model(types.SimpleNamespace(batcher=batcher), 7)
model_thread = batcher._executor.submit(lambda: os.getpriority(os.PRIO_PROCESS, 0)).result()
print(os.getpriority(os.PRIO_PROCESS, 0), model_thread)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="nice is per thread on Linux only")
def test_the_http_thread_yields_and_the_model_thread_keeps_its_priority():
    # A subprocess: nice only goes up for an unprivileged process, so the test runner must not be touched.
    out = subprocess.run([sys.executable, "-c", YIELD_SCRIPT], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1], check=True).stdout.split()
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert [int(x) for x in out] == [min(base + 7, 19), base]

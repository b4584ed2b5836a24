"""The predictor's micro-batcher: concurrent requests share forward passes and get their own rows back."""

from __future__ import annotations

import asyncio
import threading
import time

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

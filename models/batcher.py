"""Adaptive batching: texts from concurrent requests share forward passes, sorted by length, off the loop.

- The model runs in one worker thread, so health and readiness probes stay responsive under load.
- While a pass runs, new requests queue; the next pass takes them all (up to `max_batch` texts per pass).
  Under load (the last pass served more than one request) it also waits up to `max_wait_ms` to fill
  the batch; a lone request never waits.
- The texts of a batch are sorted by length before they are cut into passes, so short reviews are not
  padded to a long one's length; every caller gets its own rows back, in its own order.
- The queue is bounded by the latency budget: a request that would wait longer than `latency_budget_s`
  (estimated from the measured seconds per text), arrives while the oldest queued request has already
  waited longer, or finds `max_queue` texts ahead of it is refused at once with `Overloaded`, which the
  server answers with 503 and `Retry-After`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

Infer = Callable[[list[str]], tuple[Sequence[Any], Sequence[Any]]]


class Overloaded(Exception):
    """More queued work than can be served within the latency budget; retry after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class _Pending:
    __slots__ = ("texts", "future", "enqueued")

    def __init__(self, texts: list[str], future: asyncio.Future) -> None:
        self.texts = texts
        self.future = future
        self.enqueued = time.monotonic()


class MicroBatcher:
    def __init__(self, infer: Infer, max_batch: int, *, max_wait_ms: float = 5.0, max_queue: int = 1024,
                 latency_budget_s: float = 0.0) -> None:
        self._infer = infer
        self._max_batch = max_batch
        self._max_wait_s = max_wait_ms / 1000.0
        self._max_queue = max_queue
        self._budget_s = latency_budget_s
        self._pending: deque[_Pending] = deque()
        self._queued_texts = 0
        self._running_texts = 0
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._last_requests = 1
        self.seconds_per_text = 0.0  # moving average of measured passes; 0 until the first one

    def start_thread(self) -> None:
        """Create the model thread now: a thread takes the scheduling priority of the thread that creates
        it, so this must happen before the server's own thread lowers its priority (predictor.py)."""
        self._executor.submit(lambda: None).result()

    @property
    def queued_texts(self) -> int:
        return self._queued_texts

    def estimated_wait_s(self, extra_texts: int = 0) -> float:
        return (self._queued_texts + self._running_texts + extra_texts) * self.seconds_per_text

    async def submit(self, texts: list[str]) -> tuple[list[Any], list[Any]]:
        self._admit(len(texts))
        loop = asyncio.get_running_loop()
        if self._worker is None:
            self._wakeup = asyncio.Event()
            self._worker = loop.create_task(self._run())
        item = _Pending(texts, loop.create_future())
        self._pending.append(item)
        self._queued_texts += len(texts)
        self._wakeup.set()
        return await item.future

    def _admit(self, n: int) -> None:
        if self._queued_texts + n > self._max_queue:
            raise Overloaded(f"the predictor's queue is full ({self._queued_texts} texts waiting, at most "
                             f"{self._max_queue})", self._retry_after(n))
        if self._budget_s and self._pending:
            # Measured, not estimated: when the oldest waiting request is already past the budget (a
            # starved CPU, passes slower than their average), new ones would only wait longer.
            waited = time.monotonic() - self._pending[0].enqueued
            if waited > self._budget_s:
                raise Overloaded(f"the oldest queued request has waited {waited:.1f} s, over the predictor's "
                                 f"latency budget of {self._budget_s:g} s", self._retry_after(n))
        if self._budget_s and self.seconds_per_text and self._queued_texts:
            wait = self.estimated_wait_s(n)
            if wait > self._budget_s:
                raise Overloaded(f"the predictor would answer in about {wait:.1f} s, over its latency budget of "
                                 f"{self._budget_s:g} s", self._retry_after(n))

    def _retry_after(self, n: int) -> int:
        # Whole seconds (RFC 9110 delay-seconds): when the work ahead of this request should be done.
        return max(1, math.ceil(self.estimated_wait_s(n) - self._budget_s) if self.seconds_per_text else 1)

    async def _take(self) -> list[_Pending]:
        while not self._pending:
            self._wakeup.clear()
            await self._wakeup.wait()
        if self._last_requests > 1 and self._queued_texts < self._max_batch and self._max_wait_s > 0:
            # Busy: others are likely on their way; give them a few ms to join this pass.
            deadline = time.monotonic() + self._max_wait_s
            while self._queued_texts < self._max_batch and (left := deadline - time.monotonic()) > 0:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), left)
                except asyncio.TimeoutError:
                    break
        batch, size = [], 0
        while self._pending and (not batch or size + len(self._pending[0].texts) <= self._max_batch):
            item = self._pending.popleft()
            batch.append(item)
            size += len(item.texts)
        self._queued_texts -= size
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._take()
            self._last_requests = len(batch)
            texts = [t for item in batch for t in item.texts]
            self._running_texts = len(texts)
            started = time.perf_counter()
            try:
                first, second = await loop.run_in_executor(self._executor, self._infer_sorted, texts)
            except Exception as exc:  # every waiting request learns why, the worker lives on
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            finally:
                self._running_texts = 0
            per_text = (time.perf_counter() - started) / len(texts)
            self.seconds_per_text = per_text if not self.seconds_per_text else 0.8 * self.seconds_per_text + 0.2 * per_text
            start = 0
            for item in batch:
                end = start + len(item.texts)
                if not item.future.done():
                    item.future.set_result((first[start:end], second[start:end]))
                start = end

    def _infer_sorted(self, texts: list[str]) -> tuple[list[Any], list[Any]]:
        """Run passes of at most max_batch texts of similar length; rows come back in input order."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        first: list[Any] = [None] * len(texts)
        second: list[Any] = [None] * len(texts)
        for start in range(0, len(order), self._max_batch):
            idx = order[start:start + self._max_batch]
            a, b = self._infer([texts[i] for i in idx])
            for slot, i in enumerate(idx):
                first[i] = a[slot]
                second[i] = b[slot]
        return first, second

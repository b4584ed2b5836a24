"""Micro-batching: texts from concurrent requests share one forward pass, off the event loop.

The model runs in one worker thread, so health and readiness probes stay responsive under load;
while it works, new requests queue up and the next pass takes them all (up to `max_batch`), which
adds no latency to a lone request.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence


class MicroBatcher:
    def __init__(self, infer: Callable[[list[str]], tuple[Sequence[Any], Sequence[Any]]], max_batch: int) -> None:
        self._infer = infer
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[list[str], asyncio.Future]] | None = None
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")

    async def submit(self, texts: list[str]) -> tuple[list[Any], list[Any]]:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._run())
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self._queue.put((texts, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            size = len(batch[0][0])
            while size < self._max_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                batch.append(item)
                size += len(item[0])
            texts = [t for item_texts, _ in batch for t in item_texts]
            try:
                first, second = await loop.run_in_executor(self._executor, self._infer, texts)
            except Exception as exc:  # every waiting request learns why, the worker lives on
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for item_texts, future in batch:
                end = start + len(item_texts)
                if not future.done():
                    future.set_result((list(first[start:end]), list(second[start:end])))
                start = end

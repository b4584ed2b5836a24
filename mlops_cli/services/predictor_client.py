"""The gateway's side of the predictor: a pooled keep-alive client and a switchable upstream.

A switch sends new requests to the new predictor at once and returns only when requests already
sent to the old one have finished, so the old predictor can be stopped without failing anyone.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from ..common.logging_setup import inject_trace_headers
from .coalescer import Coalescer
from .http_hop import AiohttpHop, Hop, HopResponse, HopTimeout, HopUnreachable


class PredictorUnavailable(Exception):
    """The predictor refused the connection or is not deployed (HTTP 503)."""


class PredictorTimeout(Exception):
    """The predictor did not answer within the timeout (HTTP 504)."""


class PredictorOverloaded(Exception):
    """The predictor shed the request (HTTP 503 with Retry-After): more work than its latency budget."""

    def __init__(self, message: str, retry_after: str) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PredictorRejected(Exception):
    """The predictor answered with an error (HTTP 502, or its 4xx passed on)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Upstream:
    url: str
    model_version: str
    inflight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.idle.set()


class PredictorClient:
    def __init__(self, url: str | None, model_version: str, model_name: str, timeout_s: float, *,
                 calls_in_flight: int = 2, texts_per_call: int = 32, on_call: Callable[[int], None] | None = None) -> None:
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.current: Upstream | None = Upstream(url.rstrip("/"), model_version) if url else None
        # Keep-alive pool sized for the gateway's concurrency: no TCP handshake per request.
        self.hop: Hop = AiohttpHop(timeout_s, max_connections=256)
        self.coalescer = Coalescer(self._call, depth=calls_in_flight, max_texts=texts_per_call, on_call=on_call)

    async def close(self) -> None:
        await self.hop.close()

    async def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        """One prediction per text, in order; concurrent requests may share one predictor call."""
        return await self.coalescer.submit(texts)

    async def _call(self, texts: list[str]) -> list[dict[str, Any]]:
        upstream = self.current
        if upstream is None:
            raise PredictorUnavailable("no model is deployed yet (run `mlops deploy`)")
        upstream.inflight += 1
        upstream.idle.clear()
        try:
            response = await self.hop.request(
                "POST", f"{upstream.url}/v1/models/{self.model_name}:predict", content=orjson.dumps({"instances": texts}),
                headers=inject_trace_headers({"content-type": "application/json"}),
            )
        except HopTimeout:
            raise PredictorTimeout(f"the predictor did not answer within {self.timeout_s:g} s") from None
        except HopUnreachable as exc:
            raise PredictorUnavailable(f"the predictor at {upstream.url} is unavailable ({exc})") from None
        finally:
            upstream.inflight -= 1
            if upstream.inflight == 0:
                upstream.idle.set()
        if response.status == 503 and "retry-after" in response.headers:
            raise PredictorOverloaded(_error_text(response), response.headers["retry-after"])
        if response.status >= 400:
            raise PredictorRejected(response.status, _error_text(response))
        try:
            predictions = orjson.loads(response.content).get("predictions")
        except (orjson.JSONDecodeError, AttributeError):
            predictions = None
        if not isinstance(predictions, list) or len(predictions) != len(texts):
            raise PredictorRejected(502, "the predictor returned a malformed response")
        return predictions

    async def ready(self) -> bool:
        upstream = self.current
        if upstream is None:
            return False
        try:
            response = await self.hop.request("GET", f"{upstream.url}/v1/models/{self.model_name}", timeout_s=2.0)
        except (HopTimeout, HopUnreachable):
            return False
        try:
            return response.status == 200 and bool(orjson.loads(response.content).get("ready"))
        except (orjson.JSONDecodeError, AttributeError):
            return False

    async def switch_off(self, drain_timeout_s: float) -> None:
        """Wait (up to the timeout) for the requests already sent to the current upstream: a canary that is
        dropped or replaced keeps answering what it was given."""
        upstream = self.current
        if upstream is not None and upstream.inflight:
            try:
                await asyncio.wait_for(upstream.idle.wait(), timeout=drain_timeout_s)
            except asyncio.TimeoutError:
                pass

    async def switch(self, url: str, model_version: str, drain_timeout_s: float) -> Upstream | None:
        """Point new requests at `url`; wait for the old upstream's requests to finish."""
        old, self.current = self.current, Upstream(url.rstrip("/"), model_version)
        if old is not None and old.inflight:
            try:
                await asyncio.wait_for(old.idle.wait(), timeout=drain_timeout_s)
            except asyncio.TimeoutError:
                pass
        return old


def _error_text(response: HopResponse) -> str:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.content.decode("utf-8", "replace")[:300] or f"HTTP {response.status}"
    if isinstance(body, dict):
        return str(body.get("error") or body.get("detail") or body)[:300]
    return str(body)[:300]

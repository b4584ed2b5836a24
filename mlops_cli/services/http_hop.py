"""The gateway's HTTP hop to the predictor: one keep-alive connection pool, on aiohttp.

Not httpx, which the rest of the code uses: its pool checks every pooled connection for expiry on each
request (httpcore's `_assign_requests_to_connections`), which was 40% of the gateway's CPU at
concurrency 32 (py-spy, 2026-11-27). aiohttp's connector keeps idle connections per host in a deque.

    hop = AiohttpHop(timeout_s=5)
    response = await hop.request("POST", "http://127.0.0.1:8090/v1/models/sentiment:predict", content=b"...")
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Mapping, Protocol

import aiohttp


class HopTimeout(Exception):
    """No answer within the timeout."""


class HopUnreachable(Exception):
    """Connection refused, reset or closed before an answer (the upstream is down or restarting)."""


@dataclass(frozen=True)
class HopResponse:
    status: int
    headers: Mapping[str, str]  # lower-case names
    content: bytes


class Hop(Protocol):
    async def request(self, method: str, url: str, *, content: bytes | None = None,
                      headers: Mapping[str, str] | None = None, timeout_s: float | None = None) -> HopResponse: ...

    async def close(self) -> None: ...


class AiohttpHop:
    def __init__(self, timeout_s: float, max_connections: int = 256, keepalive_s: float = 4.0) -> None:
        self.timeout_s = timeout_s
        self._max_connections = max_connections
        # Shorter than uvicorn's 5 s keep-alive, so we never reuse a connection the server is closing.
        self._keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None

    def _session_for_loop(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Created on first use: an aiohttp session belongs to the running event loop.
            connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=self._keepalive_s,
                                             ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                                  skip_auto_headers=("User-Agent",))
        return self._session

    async def request(self, method: str, url: str, *, content: bytes | None = None,
                      headers: Mapping[str, str] | None = None, timeout_s: float | None = None) -> HopResponse:
        timeout = aiohttp.ClientTimeout(total=timeout_s or self.timeout_s)
        try:
            async with self._session_for_loop().request(method, url, data=content, headers=headers,
                                                        timeout=timeout) as response:
                body = await response.read()
                return HopResponse(response.status, {k.lower(): v for k, v in response.headers.items()}, body)
        except asyncio.TimeoutError as exc:  # aiohttp's ServerTimeoutError is one too
            raise HopTimeout(str(exc) or "timed out") from None
        except aiohttp.ClientError as exc:
            raise HopUnreachable(type(exc).__name__) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

"""The gateway's canary: a second predictor that answers `percent`% of the requests, chosen per request.

`mlops deploy --canary P` on the local target starts the new version's predictor beside the serving one
and sets the split here (`PUT /admin/canary`); `--promote` switches the main upstream to it and clears the
split, `--rollback` clears it (`DELETE /admin/canary`, which waits for the canary's requests in flight).
Each answer carries the version that gave it, so the prediction log, feedback and live accuracy tell the
two apart; the canary judge reads each predictor's own request counters (models/predictor_metrics.py).

    split = TrafficSplit(make_client)
    await split.set("http://127.0.0.1:8091", "2", 10)     # 10% of requests to version 2
    split.choose(main_client)                             # the client for this request
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

from fastapi import Request

from .gateway_http import ApiError, http_url, json_body
from .upstream_policy import allowed_upstream


@dataclass(frozen=True)
class Canary:
    url: str
    model_version: str
    percent: int

    def as_dict(self) -> dict[str, Any]:
        return {"url": self.url, "model_version": self.model_version, "percent": self.percent}


def canary_request(body: Any) -> tuple[str, str, int]:
    """(url, model_version, percent) from a `PUT /admin/canary` body, or a 422 naming what is wrong."""
    url = body.get("url") if isinstance(body, dict) else None
    version = body.get("model_version") if isinstance(body, dict) else None
    percent = body.get("percent") if isinstance(body, dict) else None
    if not isinstance(url, str) or not http_url(url) or not isinstance(version, str) or not version.strip():
        raise ApiError(422, "invalid_input", 'expected {"url": "http://host:port", "model_version": "3", "percent": 10}')
    if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 99:
        raise ApiError(422, "invalid_input", f"percent must be a whole number from 1 to 99, got {percent!r}")
    return url, version, percent


class TrafficSplit:
    """At most one canary beside the main upstream. `make_client(url, version)` builds its predictor client
    (its own connection pool and coalescer, so batches never mix the two versions)."""

    def __init__(self, make_client: Callable[[str, str], Any], rng: Callable[[], float] = random.random,
                 initial: Canary | None = None) -> None:
        self.make_client, self.rng = make_client, rng
        self.canary: Canary | None = initial
        self.client: Any = make_client(initial.url, initial.model_version) if initial else None

    async def set(self, url: str, model_version: str, percent: int, drain_timeout_s: float = 0.0) -> None:
        """Start (or re-weigh) the canary. The same predictor keeps its client; another replaces it."""
        url = url.rstrip("/")
        if self.canary is not None and (self.canary.url, self.canary.model_version) == (url, model_version):
            self.canary = Canary(url, model_version, percent)
            return
        old = self.client
        self.client = self.make_client(url, model_version)
        self.canary = Canary(url, model_version, percent)
        await _retire(old, drain_timeout_s)

    async def clear(self, drain_timeout_s: float) -> Canary | None:
        """Send nothing more to the canary; return once its requests in flight are answered (or the timeout)."""
        old, client = self.canary, self.client
        self.canary, self.client = None, None
        await _retire(client, drain_timeout_s)
        return old

    def choose(self, main: Any) -> Any:
        """The client for one request: the canary's with probability percent/100, else `main`."""
        canary, client = self.canary, self.client
        if canary is not None and client is not None and self.rng() * 100 < canary.percent:
            return client
        return main

    def as_dict(self) -> dict[str, Any] | None:
        return self.canary.as_dict() if self.canary else None


async def _retire(client: Any, drain_timeout_s: float) -> None:
    if client is None:
        return
    await client.switch_off(drain_timeout_s)
    await client.close()


def add_canary_routes(app: Any, split: TrafficSplit, config: Any, metrics: Any) -> None:
    """`PUT /admin/canary` {url, model_version, percent} and `DELETE /admin/canary` (admin credential, as
    `/admin/upstream`; the canary must be one of the platform's predictors: services/upstream_policy.py)."""
    drain_s = config.gateway.timeout_s + 1

    @app.put("/admin/canary", summary="Send a share of requests to a second predictor (`mlops deploy --canary`)")
    async def put_canary(request: Request):
        url, version, percent = canary_request(await json_body(request))
        refused = allowed_upstream(config, url)
        if refused:
            raise ApiError(422, "upstream_not_allowed", refused)
        await split.set(url, version, percent, drain_s)
        metrics.canary(version, percent)
        return {"canary": split.as_dict()}

    @app.delete("/admin/canary", summary="Stop the canary's share (`mlops deploy --promote/--rollback`)")
    async def delete_canary():
        old = await split.clear(drain_s)
        metrics.canary(None)
        return {"canary": None, "previous": old.as_dict() if old else None}

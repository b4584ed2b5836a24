"""The gateway's own admission limit (services/admission.py): past the hard cap, or when the measured
completion rate says a new request would wait longer than the latency budget, a fast 503 with
Retry-After, decided before the predictor sees the request; never a 500."""

from __future__ import annotations

import asyncio
import time

import httpx

from mlops_cli.config.loading import load_config
from mlops_cli.services.admission import MIN_IN_FLIGHT, Admission
from mlops_cli.services.gateway import GatewaySettings, create_app
from mlops_cli.services.gateway_auth import BasicAuth
from mlops_cli.services.http_hop import HopResponse

AUTH = ("admin", "s3cret-pass")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_hard_cap_refuses_past_max_in_flight():
    admission = Admission(max_in_flight=3, budget_s=10.0)
    assert [admission.try_enter() for _ in range(3)] == [None, None, None]
    assert admission.try_enter() == 1  # no rate measured yet: come back in a second
    admission.leave()
    assert admission.try_enter() is None
    assert admission.shed == 1


def test_rate_limit_follows_littles_law():
    clock = Clock()
    admission = Admission(max_in_flight=1000, budget_s=1.0, window_s=2.0, clock=clock)
    assert admission.try_enter() is None  # one slow request keeps the gateway busy throughout
    for _ in range(16):  # and 16 quick ones complete within 2 s: 8 per second
        assert admission.try_enter() is None
        clock.now += 0.125
        admission.leave()
    assert admission.rate() == 8.0
    # Within a 1 s budget at 8/s about 8 may be in flight: 7 more join the slow one.
    admitted = 0
    while admission.try_enter() is None:
        admitted += 1
    assert admitted == 7
    # The refusal says when the work ahead should be done: (8 + 1) / 8 - 1 s, rounded up.
    assert admission.try_enter() == 1
    # A starved machine completes fewer: the old completions age out, 7 in the new window = 3.5/s.
    clock.now += 2.5
    for _ in range(7):
        admission.leave()
    admitted = 0
    while admission.try_enter() is None:
        admitted += 1
    assert admitted == MIN_IN_FLIGHT - 1  # (4 + 1) / 3.5 > 1 s: only the floor gets in


def test_after_an_idle_spell_only_the_hard_cap_applies():
    clock = Clock()
    admission = Admission(max_in_flight=50, budget_s=1.0, window_s=2.0, clock=clock)
    admission.try_enter()
    admission.leave()  # one completion in the window: 0.5 per second, which says nothing about capacity
    clock.now += 0.5
    admitted = 0
    while admission.try_enter() is None:
        admitted += 1
    assert admitted == 50
    # Once busy for a whole window, the measured rate applies: 1 completion in 2 s says 50 in flight wait 100 s.
    clock.now += 2.0
    admission.leave()
    assert admission.expected_wait_s() == 50 / 0.5
    assert admission.try_enter() == 99


def test_a_lone_request_is_never_refused_for_lack_of_a_rate():
    clock = Clock()
    admission = Admission(max_in_flight=100, budget_s=0.001, clock=clock)
    admission.try_enter()
    admission.leave()
    clock.now += 60  # idle: no completion in the window
    assert all(admission.try_enter() is None for _ in range(MIN_IN_FLIGHT))


class SlowHop:
    """A predictor that answers every call after `delay_s`, counting the texts that reach it."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.seen = 0

    async def request(self, method, url, *, content=None, headers=None, timeout_s=None):
        import orjson

        if method == "GET":
            return HopResponse(200, {}, b'{"ready": true}')
        n = len(orjson.loads(content)["instances"])
        self.seen += n
        await asyncio.sleep(self.delay_s)
        row = {"logits": [-1.0, 0.0], "labels": ["Negative", "Positive"], "model_version": "1"}
        return HopResponse(200, {"content-type": "application/json"}, orjson.dumps({"predictions": [row] * n}))

    async def close(self) -> None:
        pass


async def _burst(app, n: int) -> list[tuple[httpx.Response, float]]:
    async def one(client: httpx.AsyncClient):
        start = time.perf_counter()
        response = await client.post("/predict", json={"text": "worked well"}, auth=AUTH)
        return response, time.perf_counter() - start

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw", timeout=30) as client:
        return await asyncio.gather(*(one(client) for _ in range(n)))


def test_gateway_sheds_past_its_cap_before_the_predictor_sees_the_request(project):
    (project / "mlops.toml").write_text("[gateway]\nmax_in_flight = 4\ntimeout_s = 5\n[serving]\nlatency_budget_ms = 2000\n")
    app = create_app(GatewaySettings(load_config(), "http://predictor", "1", BasicAuth({AUTH[0]: AUTH[1]})))
    hop = app.state.client.hop = SlowHop(delay_s=0.5)
    results = asyncio.run(_burst(app, 24))
    statuses = [r.status_code for r, _ in results]
    assert set(statuses) == {200, 503} and statuses.count(200) == 4, statuses
    assert hop.seen == 4  # texts: the refused 20 never reached the predictor
    for response, elapsed in results:
        if response.status_code == 503:
            assert response.headers["retry-after"] == "1"
            assert response.json()["error"]["code"] == "overloaded"
            assert "at capacity" in response.json()["error"]["message"]
            assert elapsed < 0.4  # refused at once, not after the 0.5 s the admitted ones take
    assert app.state.admission.in_flight == 0  # every admitted request released its slot


def test_strangers_learn_nothing_about_load(project):
    (project / "mlops.toml").write_text("[gateway]\nmax_in_flight = 1\n")
    app = create_app(GatewaySettings(load_config(), "http://predictor", "1", BasicAuth({AUTH[0]: AUTH[1]})))
    app.state.admission.in_flight = 1  # at capacity

    async def post(auth):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            return await client.post("/predict", json={"text": "fine"}, auth=auth)

    assert asyncio.run(post(("admin", "wrong"))).status_code == 401
    assert asyncio.run(post(AUTH)).status_code == 503


def test_refusals_are_counted_as_503_in_the_metrics(project):
    (project / "mlops.toml").write_text("[gateway]\nmax_in_flight = 1\n")
    app = create_app(GatewaySettings(load_config(), "http://predictor", "1", BasicAuth({AUTH[0]: AUTH[1]})))
    app.state.client.hop = SlowHop(delay_s=0.2)
    asyncio.run(_burst(app, 5))

    async def metrics() -> str:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            return (await client.get("/metrics")).text

    text = asyncio.run(metrics())
    assert 'mlops_gateway_requests_total{method="POST",route="/predict",status="503"} 4.0' in text
    assert 'mlops_gateway_requests_total{method="POST",route="/predict",status="200"} 1.0' in text

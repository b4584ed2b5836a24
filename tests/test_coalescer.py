"""Requests that arrive while the predictor is busy share its next call (services/coalescer.py): a
request alone goes at once, riders get their own rows back in their own order, a failed call fails
exactly its riders, and a rider whose client left is not sent."""

from __future__ import annotations

import asyncio
import random

import httpx
import orjson

from mlops_cli.config.loading import load_config
from mlops_cli.services.coalescer import Coalescer
from mlops_cli.services.gateway import GatewaySettings, create_app
from mlops_cli.services.gateway_auth import BasicAuth
from mlops_cli.services.http_hop import HopResponse


class GatedPredictor:
    """Answers each text with its upper-case form once `gate` opens; logs every call's texts."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gate = asyncio.Event()

    async def __call__(self, texts: list[str]) -> list[str]:
        self.calls.append(list(texts))
        await self.gate.wait()
        if "bad" in texts:
            raise RuntimeError("the predictor rejected the call")
        return [t.upper() for t in texts]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_request_alone_is_sent_at_once():
    async def scenario():
        predictor = GatedPredictor()
        coalescer = Coalescer(predictor, depth=2, max_texts=32)
        task = asyncio.create_task(coalescer.submit(["worked"]))
        await settle()
        assert predictor.calls == [["worked"]]  # no waiting for company
        predictor.gate.set()
        assert await task == ["WORKED"]
        assert coalescer.in_flight == 0

    asyncio.run(scenario())


def test_requests_arriving_while_busy_share_the_next_call():
    async def scenario():
        predictor = GatedPredictor()
        coalescer = Coalescer(predictor, depth=1, max_texts=32)
        first = asyncio.create_task(coalescer.submit(["a"]))
        await settle()
        riders = [asyncio.create_task(coalescer.submit(texts)) for texts in (["b"], ["c1", "c2"], ["d"])]
        await settle()
        assert predictor.calls == [["a"]]  # the riders wait for the one call in flight
        predictor.gate.set()
        assert await first == ["A"]
        assert [await r for r in riders] == [["B"], ["C1", "C2"], ["D"]]
        assert predictor.calls == [["a"], ["b", "c1", "c2", "d"]]
        assert coalescer.calls == 2

    asyncio.run(scenario())


def test_past_max_texts_another_call_goes_out_without_a_free_slot():
    async def scenario():
        predictor = GatedPredictor()
        coalescer = Coalescer(predictor, depth=1, max_texts=3)
        tasks = [asyncio.create_task(coalescer.submit([t])) for t in "abcde"]
        await settle()
        # "a" holds the only slot; b, c, d fill a call of max_texts and go anyway; "e" waits.
        assert predictor.calls == [["a"], ["b", "c", "d"]]
        predictor.gate.set()
        assert [await t for t in tasks] == [["A"], ["B"], ["C"], ["D"], ["E"]]
        assert predictor.calls[-1] == ["e"]

    asyncio.run(scenario())


def test_a_failed_call_fails_its_riders_only():
    async def scenario():
        predictor = GatedPredictor()
        coalescer = Coalescer(predictor, depth=1, max_texts=2)
        tasks = [asyncio.create_task(coalescer.submit([t])) for t in ("a", "b", "bad", "c")]
        await settle()
        assert predictor.calls == [["a"], ["b", "bad"]]
        predictor.gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert results[0] == ["A"] and results[3] == ["C"]
        assert all(isinstance(r, RuntimeError) for r in results[1:3])  # "b" rode with "bad"
        assert await coalescer.submit(["later"]) == ["LATER"]  # nothing is stuck after a failure
        assert coalescer.in_flight == 0

    asyncio.run(scenario())


def test_a_rider_whose_client_left_is_not_sent():
    async def scenario():
        predictor = GatedPredictor()
        coalescer = Coalescer(predictor, depth=1, max_texts=32)
        first = asyncio.create_task(coalescer.submit(["a"]))
        await settle()
        gone = asyncio.create_task(coalescer.submit(["gone"]))
        stays = asyncio.create_task(coalescer.submit(["stays"]))
        await settle()
        gone.cancel()
        await settle()
        predictor.gate.set()
        assert await first == ["A"] and await stays == ["STAYS"]
        assert predictor.calls == [["a"], ["stays"]]

    asyncio.run(scenario())


def test_every_caller_gets_its_own_rows_under_random_concurrency():
    async def scenario():
        rng = random.Random(7)
        calls: list[int] = []

        async def predictor(texts: list[str]) -> list[str]:
            calls.append(len(texts))
            await asyncio.sleep(rng.uniform(0, 0.003))
            return [t[::-1] for t in texts]

        coalescer = Coalescer(predictor, depth=2, max_texts=8)

        async def caller(i: int) -> None:
            await asyncio.sleep(rng.uniform(0, 0.02))
            texts = [f"caller{i}-text{j}" for j in range(rng.randint(1, 3))]
            assert await coalescer.submit(texts) == [t[::-1] for t in texts]

        await asyncio.gather(*(caller(i) for i in range(300)))
        assert sum(calls) >= 300 and len(calls) < 300  # calls were shared
        assert max(calls) <= 8  # riders never overfill a call (a single request larger than max_texts would)

    asyncio.run(scenario())


class CountingHop:
    """A predictor behind the gateway: label by text ("good" -> Positive), 50 ms per call, calls counted."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    async def request(self, method, url, *, content=None, headers=None, timeout_s=None):
        if method == "GET":
            return HopResponse(200, {}, b'{"ready": true}')
        texts = orjson.loads(content)["instances"]
        self.calls.append(len(texts))
        await asyncio.sleep(0.05)
        rows = [{"logits": [0.0, 2.0] if "good" in t else [2.0, 0.0], "labels": ["Negative", "Positive"],
                 "model_version": "1"} for t in texts]
        return HopResponse(200, {"content-type": "application/json"}, orjson.dumps({"predictions": rows}))

    async def close(self) -> None:
        pass


def test_gateway_requests_share_predictor_calls_and_keep_their_answers(project):
    (project / "mlops.toml").write_text("[gateway]\npredictor_calls = 2\ntexts_per_call = 32\n")
    app = create_app(GatewaySettings(load_config(), "http://predictor", "1", BasicAuth({"admin": "pw"})))
    hop = app.state.client.hop = CountingHop()
    texts = [f"{'good' if i % 3 else 'awful'} review {i}" for i in range(20)]

    async def burst():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            return await asyncio.gather(*(client.post("/predict", json={"text": t}, auth=("admin", "pw")) for t in texts))

    responses = asyncio.run(burst())
    assert [r.json()["label"] for r in responses] == ["Positive" if "good" in t else "Negative" for t in texts]
    assert sum(hop.calls) == 20 and len(hop.calls) <= 3, hop.calls  # two sent at once, the rest ride together

    async def metrics() -> str:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            return (await client.get("/metrics")).text

    text = asyncio.run(metrics())  # operators see the coalescing: texts per predictor call
    assert f"mlops_gateway_predictor_call_texts_count {float(len(hop.calls))}" in text
    assert "mlops_gateway_predictor_call_texts_sum 20.0" in text

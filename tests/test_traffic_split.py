"""The gateway's canary split (services/traffic_split.py): a second predictor answers `percent`% of the
requests, chosen per request; the split is set and cleared by the admin routes `mlops deploy --canary /
--promote / --rollback` use on the local target, and a restarted gateway reads it back from the upstream
file. Two real HTTP predictors on loopback, each answering with its own version."""

from __future__ import annotations

import json
import math
import random
import threading
from http.server import ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient

from mlops_cli.config.loading import load_config
from mlops_cli.services.gateway import GatewaySettings, _recorded_upstream, create_app
from mlops_cli.services.gateway_auth import BasicAuth
from mlops_cli.services.traffic_split import Canary, TrafficSplit

from .support import QuietHandler, free_port

AUTH = ("admin", "s3cret-pass")
ADMIN = ("admin", "adm1n-only-pass")


def _within_binomial_bound(hits: int, n: int, p: float, z: float = 4.5) -> bool:
    """|hits - np| within z standard deviations: a false failure about once in 150,000 runs."""
    return abs(hits - n * p) <= z * math.sqrt(n * p * (1 - p))


def _predictor(version: str) -> type[QuietHandler]:
    class Handler(QuietHandler):
        def do_GET(self):
            self.send_json(200, {"name": "sentiment", "ready": True})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_json(200, {"predictions": [{"logits": [0.0, 1.0], "labels": ["negative", "positive"],
                                                  "model_version": version} for _ in body["instances"]]})

    return Handler


@pytest.fixture
def predictors(project):
    """Two predictors on neighbouring loopback ports, [local].predictor_port set so both are allowed upstreams."""
    from mlops_cli.platform.processes import free_port_from

    base = free_port()
    servers, urls = [], []
    for version in ("1", "2"):
        port = free_port_from(base, "127.0.0.1", {s.server_address[1] for s in servers})
        server = ThreadingHTTPServer(("127.0.0.1", port), _predictor(version))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        urls.append(f"http://127.0.0.1:{port}")
    (project / "mlops.toml").write_text(f"[gateway]\ntimeout_s = 5.0\n[local]\npredictor_port = {base}\n")
    try:
        yield urls
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def _gateway(urls, canary: Canary | None = None) -> TestClient:
    settings = GatewaySettings(load_config(), urls[0], "1", BasicAuth({AUTH[0]: AUTH[1]}), BasicAuth({ADMIN[0]: ADMIN[1]}),
                               canary)
    return TestClient(create_app(settings))


def test_choose_honours_the_weight_within_a_binomial_bound():
    for percent in (1, 10, 50, 90):
        split = TrafficSplit(lambda url, version: "canary", rng=random.Random(percent).random,
                             initial=Canary("http://127.0.0.1:1", "2", percent))
        n = 20_000
        hits = sum(split.choose("main") == "canary" for _ in range(n))
        assert _within_binomial_bound(hits, n, percent / 100), (percent, hits)
    assert TrafficSplit(lambda *a: "canary").choose("main") == "main"  # no canary: everything to the main one


def test_the_gateway_splits_requests_and_each_answer_names_its_version(predictors):
    with _gateway(predictors) as client:
        set_ = client.put("/admin/canary", json={"url": predictors[1], "model_version": "2", "percent": 25}, auth=ADMIN)
        assert set_.status_code == 200, set_.text
        assert client.get("/admin/upstream", auth=ADMIN).json()["canary"] == {"url": predictors[1], "model_version": "2",
                                                                               "percent": 25}
        n = 400
        versions = [client.post("/predict", json={"text": f"review {i}"}, auth=AUTH).json()["model_version"]
                    for i in range(n)]
        assert set(versions) == {"1", "2"}
        assert _within_binomial_bound(versions.count("2"), n, 0.25), versions.count("2")
        assert 'mlops_gateway_canary_percent{model_version="2"} 25.0' in client.get("/metrics").text

        cleared = client.delete("/admin/canary", auth=ADMIN)
        assert cleared.json() == {"canary": None, "previous": {"url": predictors[1], "model_version": "2", "percent": 25}}
        assert client.delete("/admin/canary", auth=ADMIN).json() == {"canary": None, "previous": None}  # idempotent
        assert {client.post("/predict", json={"text": "x"}, auth=AUTH).json()["model_version"] for _ in range(50)} == {"1"}
        assert "mlops_gateway_canary_percent{" not in client.get("/metrics").text


@pytest.mark.parametrize("percent", [0, 100, -5, "10", 10.5, True, None])
def test_a_bad_percent_is_refused_with_a_clear_message_and_nothing_changes(predictors, percent):
    with _gateway(predictors) as client:
        refused = client.put("/admin/canary", json={"url": predictors[1], "model_version": "2", "percent": percent},
                             auth=ADMIN)
        assert refused.status_code == 422
        assert refused.json()["error"]["message"] == f"percent must be a whole number from 1 to 99, got {percent!r}"
        assert client.get("/admin/upstream", auth=ADMIN).json()["canary"] is None


def test_the_canary_must_be_one_of_the_platforms_predictors_and_needs_the_admin_credential(predictors):
    with _gateway(predictors) as client:
        body = {"url": "http://example.com:80", "model_version": "2", "percent": 10}
        assert client.put("/admin/canary", json=body, auth=ADMIN).json()["error"]["code"] == "upstream_not_allowed"
        good = {"url": predictors[1], "model_version": "2", "percent": 10}
        assert client.put("/admin/canary", json=good, auth=AUTH).status_code == 401   # /predict's password
        assert client.delete("/admin/canary", auth=AUTH).status_code == 401
        assert client.get("/admin/upstream", auth=ADMIN).json()["canary"] is None


def test_a_restarted_gateway_reads_the_split_back_from_the_upstream_file(predictors, tmp_path):
    path = tmp_path / "upstream.json"
    path.write_text(json.dumps({"url": predictors[0], "model_version": "1",
                                "canary": {"url": predictors[1], "model_version": "2", "percent": 50}}))
    url, version, canary = _recorded_upstream(str(path), "")
    assert (url, version, canary) == (predictors[0], "1", Canary(predictors[1], "2", 50))
    with _gateway(predictors, canary) as client:
        assert client.get("/admin/upstream", auth=ADMIN).json()["canary"]["percent"] == 50
        versions = [client.post("/predict", json={"text": "x"}, auth=AUTH).json()["model_version"] for _ in range(200)]
        assert _within_binomial_bound(versions.count("2"), 200, 0.5)
    path.write_text(json.dumps({"url": predictors[0], "model_version": "1", "canary": {"url": predictors[1]}}))
    assert _recorded_upstream(str(path), "")[2] is None   # a canary it cannot read: all traffic to the deployed one

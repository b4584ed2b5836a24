"""The gateway's contract: auth, input validation, errors as JSON, never a 500 for bad input."""

from __future__ import annotations

import base64
import json

import bcrypt
import pytest
from fastapi.testclient import TestClient

from mlops_cli.common.errors import ConfigError, PreflightError
from mlops_cli.config.loading import load_config
from mlops_cli.services.gateway import GatewaySettings, create_app
from mlops_cli.services.gateway_auth import BasicAuth

from .support import free_port

AUTH = ("admin", "s3cret-pass")
ADMIN = ("admin", "adm1n-only-pass")  # /admin/*: its own password (issue 26, D16)
PREDICTOR_PORT = 18090


@pytest.fixture
def client(project):
    (project / "mlops.toml").write_text("[gateway]\nmax_chars = 50\nmax_batch = 3\ntimeout_s = 1.0\n"
                                        f"[local]\npredictor_port = {PREDICTOR_PORT}\n")
    cfg = load_config()
    # A predictor URL where nothing listens: inference reaches the "unavailable" path.
    settings = GatewaySettings(cfg, f"http://127.0.0.1:{free_port()}", "1", BasicAuth({AUTH[0]: AUTH[1]}),
                               BasicAuth({ADMIN[0]: ADMIN[1]}))
    with TestClient(create_app(settings)) as c:
        yield c


def test_health_and_metrics_need_no_auth(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 503
    assert "mlops_gateway_requests_total" in client.get("/metrics").text


@pytest.mark.parametrize("auth", [None, ("admin", "wrong"), ("nobody", "s3cret-pass")])
def test_401_without_or_with_wrong_credentials(client, auth):
    response = client.post("/predict", json={"text": "great"}, auth=auth)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic")
    assert response.json()["error"]["code"] == "unauthorized"


def test_malformed_authorization_header_is_401(client):
    for header in ("Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), "Bearer x"):
        assert client.post("/predict", json={"text": "x"}, headers={"Authorization": header}).status_code == 401


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({}, 422, "invalid_input"),
        ({"text": ""}, 422, "empty_text"),
        ({"text": "   \n\t "}, 422, "empty_text"),
        ({"text": 42}, 422, "invalid_input"),
        ({"text": None}, 422, "invalid_input"),
        (["text"], 422, "invalid_input"),
        ({"text": "x" * 51}, 413, "text_too_long"),
    ],
)
def test_bad_single_inputs(client, body, status, code):
    response = client.post("/predict", json=body, auth=AUTH)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"texts": []}, 422, "invalid_input"),
        ({"texts": "one"}, 422, "invalid_input"),
        ({"texts": ["a", "b", "c", "d"]}, 413, "batch_too_large"),
        ({"texts": ["fine", ""]}, 422, "empty_text"),
        ({"texts": ["fine", 3]}, 422, "invalid_input"),
        ({"texts": ["fine", "y" * 60]}, 413, "text_too_long"),
    ],
)
def test_bad_batch_inputs(client, body, status, code):
    response = client.post("/predict/batch", json=body, auth=AUTH)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_invalid_json_and_non_utf8(client):
    bad_json = client.post("/predict", content=b'{"text": ', auth=AUTH, headers={"content-type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_json"
    bad_bytes = client.post("/predict", content=b'{"text": "\xff\xfe"}', auth=AUTH)
    assert bad_bytes.status_code == 400 and bad_bytes.json()["error"]["code"] == "invalid_encoding"


def test_predictor_down_is_503_json(client):
    response = client.post("/predict", json={"text": "fine"}, auth=AUTH)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "predictor_unavailable"


def test_requests_are_counted_by_route_and_status(client):
    client.post("/predict", json={"text": ""}, auth=AUTH)
    metrics = client.get("/metrics").text
    assert 'mlops_gateway_requests_total{method="POST",route="/predict",status="422"} 1.0' in metrics
    assert 'mlops_gateway_request_duration_seconds_bucket{le="0.005",route="/predict"}' in metrics


def test_admin_switch_needs_auth_and_valid_body(client):
    assert client.put("/admin/upstream", json={"url": "http://x", "model_version": "2"}).status_code == 401
    assert client.put("/admin/upstream", json={"url": "ftp://x"}, auth=ADMIN).status_code == 422
    ok = client.put("/admin/upstream", json={"url": f"http://127.0.0.1:{PREDICTOR_PORT + 1}", "model_version": "2"},
                    auth=ADMIN)
    assert ok.status_code == 200
    assert client.get("/admin/upstream", auth=ADMIN).json()["model_version"] == "2"
    assert 'mlops_model_info{model_name="sentiment",model_version="2"} 1.0' in client.get("/metrics").text


def test_the_predict_password_cannot_switch_the_upstream(client):
    """D16: whoever may call /predict could repoint the gateway (and every review after) anywhere."""
    body = {"url": f"http://127.0.0.1:{PREDICTOR_PORT}", "model_version": "2"}
    assert client.put("/admin/upstream", json=body, auth=AUTH).status_code == 401
    assert client.get("/admin/upstream", auth=AUTH).status_code == 401
    assert client.post("/predict", json={"text": "fine"}, auth=ADMIN).status_code == 401  # and not the other way
    assert client.put("/admin/upstream", json=body, auth=ADMIN).status_code == 200


@pytest.mark.parametrize("url", [
    "http://example.com:80", "http://10.0.0.7:18090", "http://127.0.0.1:5000", "http://127.0.0.1:18290",
    "https://127.0.0.1:18090", "http://sentiment-predictor.other.svc.cluster.local",
    "http://sentiment-predictor.mlops.svc.cluster.local:8080", "http://user@example.com:18090",
])
def test_upstreams_are_the_platforms_own_predictors_only(client, url):
    refused = client.put("/admin/upstream", json={"url": url, "model_version": "9"}, auth=ADMIN)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "upstream_not_allowed"
    assert client.get("/admin/upstream", auth=ADMIN).json()["model_version"] == "1"  # still the one it had


@pytest.mark.parametrize("url", [
    f"http://127.0.0.1:{PREDICTOR_PORT}", f"http://localhost:{PREDICTOR_PORT + 199}", f"http://[::1]:{PREDICTOR_PORT + 3}",
    "http://sentiment-predictor.mlops.svc.cluster.local", "http://sentiment-predictor.mlops",
])
def test_local_predictor_ports_and_the_cluster_predictor_are_allowed(client, url):
    assert client.put("/admin/upstream", json={"url": url, "model_version": "4"}, auth=ADMIN).status_code == 200


def test_the_allowed_cluster_predictor_is_the_one_the_chart_renders(project):
    from charts.inference_service import predictor_host
    from mlops_cli.services.upstream_policy import cluster_predictor_host

    (project / "mlops.toml").write_text('[serving]\nmodel_name = "reviews"\n[kubernetes]\nnamespace = "ml-prod"\n')
    cfg = load_config()
    assert cluster_predictor_host(cfg) == predictor_host(cfg) == "reviews-predictor.ml-prod.svc.cluster.local"


def test_admin_routes_are_closed_without_an_admin_credential(project):
    cfg = load_config()
    settings = GatewaySettings(cfg, None, "", BasicAuth({AUTH[0]: AUTH[1]}))
    with TestClient(create_app(settings)) as c:
        body = {"url": f"http://127.0.0.1:{cfg.local.predictor_port}", "model_version": "2"}
        assert c.put("/admin/upstream", json=body, auth=AUTH).status_code == 401


def test_health_probes_are_logged_at_debug_only(client, caplog):
    """D37: `mlops logs gateway` was mostly the healer's /healthz probe, one line every 2 s."""
    import logging

    caplog.set_level(logging.INFO, logger="mlops.gateway")
    for path in ("/healthz", "/readyz", "/healthz"):
        client.get(path)
    client.post("/predict", json={"text": ""}, auth=AUTH)
    routes = [getattr(r, "route", None) for r in caplog.records if r.getMessage() == "request"]
    assert routes == ["/predict"]
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="mlops.gateway")
    client.get("/healthz")
    assert [r.levelno for r in caplog.records if getattr(r, "route", None) == "/healthz"] == [logging.DEBUG]


def test_htpasswd_bcrypt_users(tmp_path):
    digest = bcrypt.hashpw(b"pw1", bcrypt.gensalt(rounds=4)).decode()
    apache_style = "$2y$" + digest[4:]
    file = tmp_path / "htpasswd"
    file.write_text(f"# users\nalice:{apache_style}\n")
    auth = BasicAuth.from_settings(file, None, None)
    header = "Basic " + base64.b64encode(b"alice:pw1").decode()
    assert auth.check(header) == "alice"
    assert auth.check("Basic " + base64.b64encode(b"alice:pw2").decode()) is None


def test_htpasswd_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        BasicAuth.from_settings(tmp_path / "missing", None, None)
    bad = tmp_path / "htpasswd"
    bad.write_text("alice:plaintext\n")
    with pytest.raises(ConfigError, match=r"htpasswd:1: expected `user:<bcrypt hash>`"):
        BasicAuth.from_settings(bad, None, None)
    with pytest.raises(PreflightError, match="MLOPS_GATEWAY_PASSWORD"):
        BasicAuth.from_settings(None, "admin", None)


def test_text_policy_normalises_and_truncates():
    from mlops_cli.common.text_policy import decide, prepare_text

    assert prepare_text("  I&#039;m   fine\n", "head", 10) == "I'm fine"
    words = " ".join(f"w{i}" for i in range(20))
    assert prepare_text(words, "head", 4) == "w0 w1 w2 w3"
    assert prepare_text(words, "head_tail", 4) == "w0 w1 w18 w19"
    label, confidence = decide([0.0, 2.0], ["negative", "positive"])
    assert label == "Positive" and confidence == pytest.approx(0.8807970779778823)


def test_docs_load_swagger_ui_from_the_gateway_itself(client):
    # issue 26 D34: /docs pointed at a CDN (FastAPI's get_swagger_ui_html defaults) and was blank offline
    import re

    assert client.get("/docs").status_code == 401
    page = client.get("/docs", auth=AUTH)
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
    assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    assert "http://" not in page.text and "https://" not in page.text
    for url in urls:
        if url == "/openapi.json":
            continue
        asset = client.get(url, auth=AUTH)
        assert asset.status_code == 200 and len(asset.content) > 500, url
        assert client.get(url).status_code == 401  # behind the same basic auth as /docs
    assert b"SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js", auth=AUTH).content
    assert client.get("/docs/assets/index.html", auth=AUTH).status_code == 404  # only what the page needs

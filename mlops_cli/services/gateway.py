"""The inference gateway: auth, validation, pre/post-processing and metrics in front of the predictor.

    python -m mlops_cli.services.gateway --host 127.0.0.1 --port 8080 --predictor-url http://127.0.0.1:8090

Routes: POST /predict, POST /predict/batch, POST /feedback (labels for logged predictions:
services/gateway_feedback.py) (basic auth; beyond what can be answered within
[serving].latency_budget_ms, or past [gateway].max_in_flight, a fast 503 with Retry-After), GET /openapi.json, /docs (basic auth), /healthz, /readyz, /metrics,
GET|PUT /admin/upstream (its own admin credential, never /predict's; used by `mlops deploy` to switch versions
without dropping requests, and only to the platform's own predictors: services/upstream_policy.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..common.secrets import Secrets
from ..common.text_policy import decide, prepare_text
from ..config.loading import load_config
from ..config.settings import Config
from .admission import Admission
from .gateway_auth import BasicAuth
from .gateway_docs import ASSETS_PATH, add_docs
from .gateway_feedback import FeedbackIntake
from .gateway_http import ApiError, FastJSONResponse, error_response, http_url, json_body, text_field, text_value
from .gateway_metrics import GatewayMetrics
from .gateway_schema import (BASIC_AUTH, INFERENCE_ERRORS, PredictBatchRequest, Prediction, PredictionBatch,
                             PredictRequest, request_body, upstream_body, with_security)
from ..common.logging_setup import configure_json_logging, request_id_var, setup_tracing
from .prediction_log import PredictionLog
from .traffic_split import Canary, TrafficSplit, add_canary_routes
from .upstream_policy import allowed_upstream
from .predictor_client import (PredictorClient, PredictorOverloaded, PredictorRejected, PredictorTimeout,
                               PredictorUnavailable)

log = logging.getLogger("mlops.gateway")
INFERENCE_ROUTES = {"/predict", "/predict/batch"}


@dataclass
class GatewaySettings:
    config: Config
    predictor_url: str | None
    model_version: str
    auth: BasicAuth | None
    # /admin/*: its own credential. None: closed (401) whenever `auth` is set; open only without any auth.
    admin_auth: BasicAuth | None = None
    canary: Canary | None = None  # a canary left by `deploy --canary` (upstream file): kept across restarts


def create_app(settings: GatewaySettings) -> FastAPI:
    cfg = settings.config
    metrics = GatewayMetrics(cfg.serving.model_name)
    prediction_log = PredictionLog(
        cfg.path(cfg.gateway.prediction_log), cfg.gateway.log_text, max_bytes=cfg.gateway.prediction_log_max_bytes,
        backups=cfg.gateway.prediction_log_backups, max_age_s=cfg.gateway.prediction_log_max_age_s,
        on_failure=metrics.prediction_log_failures.inc, batched=True)
    feedback = FeedbackIntake(cfg)
    tracer = setup_tracing("mlops-gateway", cfg.observability.otlp_endpoint)

    def predictor_client(url: str | None, version: str) -> PredictorClient:
        return PredictorClient(url, version, cfg.serving.model_name, cfg.gateway.timeout_s,
                               calls_in_flight=cfg.gateway.predictor_calls, texts_per_call=cfg.gateway.texts_per_call,
                               on_call=metrics.predictor_call_texts.observe)

    client = predictor_client(settings.predictor_url, settings.model_version)
    split = TrafficSplit(predictor_client, initial=settings.canary if settings.predictor_url else None)
    if split.canary:
        metrics.canary(split.canary.model_version, split.canary.percent)
    if settings.predictor_url:
        metrics.serving(settings.model_version)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await client.close()
        await split.clear(0.0)
        prediction_log.close()

    # /openapi.json and /docs sit behind the same basic auth as inference (see _AUTHENTICATED).
    app = FastAPI(title="mlops gateway", lifespan=lifespan, docs_url=None, redoc_url=None,
                  default_response_class=FastJSONResponse)
    app.state.client = client
    app.state.split = split

    admission = Admission(cfg.gateway.max_in_flight, cfg.serving.latency_budget_ms / 1000.0)
    app.state.admission = admission
    app.add_middleware(_Edge, auth=settings.auth, admin_auth=settings.admin_auth, admission=admission, metrics=metrics)

    @app.exception_handler(ApiError)
    async def apierror_response(_: Request, exc: ApiError):
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def httperror_response(_: Request, exc: StarletteHTTPException):
        # Unknown routes and wrong methods answer in the same error shape as everything else.
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        response = error_response(ApiError(exc.status_code, code, str(exc.detail)))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = with_security(get_openapi(title=app.title, version=app.version, routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi

    add_docs(app, openapi_url="/openapi.json", title="mlops gateway")

    async def classify(texts: list[str]) -> list[dict[str, Any]]:
        rid = request_id_var.get()
        with tracer.start_as_current_span("preprocess") as span:
            span.set_attribute("mlops.request_id", rid)
            clean = [prepare_text(t, cfg.gateway.truncation, cfg.gateway.max_words) for t in texts]
        with tracer.start_as_current_span("predictor_call") as span:
            span.set_attribute("mlops.request_id", rid)
            chosen = split.choose(client)  # the canary's share, per request
            try:
                raw = await chosen.predict(clean)
            except PredictorUnavailable as exc:
                metrics.predictor_ready.set(0)
                raise ApiError(503, "predictor_unavailable", str(exc)) from None
            except PredictorOverloaded as exc:
                # Shed, not failed: the client should come back after Retry-After (KServe answers 503 too).
                raise ApiError(503, "overloaded", str(exc), {"Retry-After": exc.retry_after}) from None
            except PredictorTimeout as exc:
                raise ApiError(504, "predictor_timeout", str(exc)) from None
            except PredictorRejected as exc:
                status = 422 if 400 <= exc.status < 500 else 502
                raise ApiError(status, "predictor_error", str(exc)) from None
            metrics.predictor_ready.set(1)
        with tracer.start_as_current_span("postprocess") as span:
            span.set_attribute("mlops.request_id", rid)
            results = []
            for text, pred in zip(texts, raw):
                label, confidence = decide(pred["logits"], pred["labels"])
                version = str(pred.get("model_version", chosen.current.model_version if chosen.current else ""))
                metrics.predictions.labels(label=label, model_version=version).inc()
                prediction_log.record(rid, text, label, confidence, version, pred)
                feedback.served(rid, version, label, pred.get("labels"), text)
                results.append({"label": label, "confidence": round(confidence, 6), "model_version": version})
        return results

    @app.post("/predict", response_model=None, summary="Classify one review",
              responses={200: {"model": Prediction, "description": "The prediction."}, **INFERENCE_ERRORS},
              openapi_extra=request_body(PredictRequest, cfg.gateway.max_chars, cfg.gateway.max_batch))
    async def predict(request: Request):
        body = await json_body(request)
        text = text_field(body, "text", cfg.gateway.max_chars)
        return (await classify([text]))[0]

    @app.post("/predict/batch", response_model=None, summary="Classify several reviews in one request",
              responses={200: {"model": PredictionBatch, "description": "One prediction per text, in order."},
                         **INFERENCE_ERRORS},
              openapi_extra=request_body(PredictBatchRequest, cfg.gateway.max_chars, cfg.gateway.max_batch))
    async def predict_batch(request: Request):
        body = await json_body(request)
        texts = body.get("texts") if isinstance(body, dict) else None
        if not isinstance(texts, list) or not texts:
            raise ApiError(422, "invalid_input", 'expected {"texts": ["review", ...]} with at least one text')
        if len(texts) > cfg.gateway.max_batch:
            raise ApiError(413, "batch_too_large", f"{len(texts)} texts; at most {cfg.gateway.max_batch} per request")
        checked = [text_value(t, f"texts[{i}]", cfg.gateway.max_chars) for i, t in enumerate(texts)]
        return {"predictions": await classify(checked)}

    @app.post("/feedback", response_model=None, summary="Label predictions (one, or a batch: all or nothing)",
              responses={200: {"description": '{"stored": n}, once every label is on disk.'}, **INFERENCE_ERRORS})
    async def post_feedback(request: Request):
        items = feedback.items(await json_body(request, feedback.max_bytes))
        return {"stored": await run_in_threadpool(feedback.store, items)}

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        ready = await client.ready()
        metrics.predictor_ready.set(1 if ready else 0)
        upstream = client.current
        body = {"ready": ready, "predictor": upstream.url if upstream else None,
                "model_version": upstream.model_version if upstream else None}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def prometheus_metrics():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/admin/upstream", openapi_extra=BASIC_AUTH, responses={401: INFERENCE_ERRORS[401]})
    async def get_upstream():
        upstream = client.current
        return {"url": upstream.url if upstream else None, "model_version": upstream.model_version if upstream else None,
                "canary": split.as_dict()}

    @app.put("/admin/upstream", summary="Switch the predictor (used by `mlops deploy`)",
             responses={422: _ERROR_422, 401: INFERENCE_ERRORS[401]}, openapi_extra=upstream_body())
    async def put_upstream(request: Request):
        body = await json_body(request)
        # Found by fuzzing (tests/reliability): a JSON array body was a 500 here.
        url = body.get("url") if isinstance(body, dict) else None
        version = body.get("model_version") if isinstance(body, dict) else None
        if not isinstance(url, str) or not http_url(url) or not isinstance(version, str) or not version.strip():
            raise ApiError(422, "invalid_input", 'expected {"url": "http://host:port", "model_version": "3"}')
        refused = allowed_upstream(cfg, url)
        if refused:
            raise ApiError(422, "upstream_not_allowed", refused)
        old = await client.switch(url, version, drain_timeout_s=cfg.gateway.timeout_s + 1)
        metrics.serving(version)
        log.info("switched predictor", extra={"to": url, "model_version": version,
                                              "from": old.url if old else None})
        return {"url": url, "model_version": version, "previous": old.url if old else None}

    add_canary_routes(app, split, cfg, metrics)
    return app


class _Edge:
    """Request id, auth, admission, metrics and the access log around every request.

    Plain ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs every request
    through an extra task and memory stream. Admission (services/admission.py) comes after auth, so
    strangers learn nothing about load, and before the body is read, so a refusal costs next to nothing.
    """

    def __init__(self, app, *, auth: BasicAuth | None, admin_auth: BasicAuth | None, admission: Admission,
                 metrics: GatewayMetrics) -> None:
        self.app, self.auth, self.admin_auth, self.admission, self.metrics = app, auth, admin_auth, admission, metrics

    def _refused(self, path: str, header: bytes) -> bool:
        """True when the request lacks the credential its route needs."""
        value = header.decode("latin-1") or None
        if path.startswith("/admin/"):
            if self.admin_auth is not None:
                return self.admin_auth.check(value) is None
            return self.auth is not None  # no admin credential configured: closed unless auth is off entirely
        # the docs' local Swagger UI assets sit behind the same credential as the docs themselves
        guarded = path in _AUTHENTICATED or path.startswith(ASSETS_PATH)
        return guarded and self.auth is not None and self.auth.check(value) is None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        headers = dict(scope["headers"])
        rid = headers.get(b"x-request-id", b"").decode("latin-1") or uuid.uuid4().hex
        token = request_id_var.set(rid)
        route = path if path in _KNOWN_ROUTES else "other"
        start = time.perf_counter()
        status = 500  # what the client gets if the app raises past Starlette's error handling

        async def send_with_id(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid.encode("latin-1"))]
            await send(message)

        try:
            if self._refused(path, headers.get(b"authorization", b"")):
                await error_response(ApiError(401, "unauthorized", "missing or wrong credentials (HTTP basic auth)"))(
                    scope, receive, send_with_id)
            elif path in INFERENCE_ROUTES and scope["method"] == "POST":
                retry_after = self.admission.try_enter()
                if retry_after is not None:
                    message = (f"the gateway is at capacity ({self.admission.in_flight} requests in flight); "
                               f"retry after {retry_after} s")
                    await error_response(ApiError(503, "overloaded", message, {"Retry-After": str(retry_after)}))(
                        scope, receive, send_with_id)
                else:
                    try:
                        await self.app(scope, receive, send_with_id)
                    finally:
                        self.admission.leave()
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
            elapsed = time.perf_counter() - start
            self.metrics.requests.labels(route=route, method=scope["method"], status=str(status)).inc()
            self.metrics.latency.labels(route=route).observe(elapsed)
            # Probes (the healer's every [local].health_interval_s, a kubelet's) would bury the requests.
            level = logging.DEBUG if path in _PROBES else logging.INFO
            if log.isEnabledFor(level):
                log.log(level, "request", extra={"request_id": rid, "route": route, "status": status,
                                                 "duration_ms": round(elapsed * 1000, 2)})


_ERROR_422 = {"model": INFERENCE_ERRORS[422]["model"], "description": "Not a {url, model_version} object."}
_KNOWN_ROUTES = {"/predict", "/predict/batch", "/feedback", "/healthz", "/readyz", "/metrics", "/admin/upstream",
                 "/admin/canary", "/openapi.json", "/docs"}
_AUTHENTICATED = INFERENCE_ROUTES | {"/feedback", "/openapi.json", "/docs"}
_PROBES = {"/healthz", "/readyz"}


def _recorded_upstream(path: str, default_version: str) -> tuple[str | None, str, Canary | None]:
    try:
        data = json.loads(open(path, encoding="utf-8").read())
        url, version = str(data["url"]), str(data["model_version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, default_version, None  # nothing deployed yet (or a torn file): start without a predictor
    canary = data.get("canary")
    try:
        return url, version, Canary(str(canary["url"]), str(canary["model_version"]), int(canary["percent"]))
    except (KeyError, TypeError, ValueError):
        return url, version, None  # no canary (or not one we can read: all traffic to the deployed version)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlops_cli.services.gateway", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("MLOPS_BIND_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("MLOPS_HTTP_PORT", "8080")))
    parser.add_argument("--predictor-url", default=os.environ.get("MLOPS_PREDICTOR_URL") or None)
    parser.add_argument("--model-version", default=os.environ.get("MLOPS_MODEL_VERSION", ""))
    parser.add_argument("--upstream-file", default=None,
                        help="JSON {url, model_version} that `mlops deploy` keeps current; read at start-up so a "
                             "restarted gateway serves the deployed version")
    args = parser.parse_args(argv)
    canary = None
    if args.upstream_file and not args.predictor_url:
        args.predictor_url, args.model_version, canary = _recorded_upstream(args.upstream_file, args.model_version)

    config = load_config()
    if config.gateway.nice:
        # Before any thread starts, so all of the gateway's threads inherit it: on a machine shared with
        # the predictor the model's passes come first and the gateway's work fills their gaps.
        try:
            os.nice(config.gateway.nice)
        except OSError:
            pass
    configure_json_logging("gateway", config.observability.log_level)
    secrets = Secrets.from_env()
    auth = None
    if config.gateway.auth:
        auth = BasicAuth.from_settings(config.path(config.gateway.htpasswd_file) if config.gateway.htpasswd_file else None,
                                       secrets.gateway_user or config.gateway.user, secrets.gateway_password)
    admin_auth = None
    if secrets.gateway_admin_password:
        admin_auth = BasicAuth({secrets.gateway_user or config.gateway.user: secrets.gateway_admin_password})
    app = create_app(GatewaySettings(config, args.predictor_url, args.model_version, auth, admin_auth, canary))

    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()

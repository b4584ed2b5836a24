"""The gateway's public contract as OpenAPI: request, response and error bodies.

The handlers validate requests themselves (one JSON error shape for every mistake, and no pydantic
round trip on the hot path), so these models describe the contract for `/openapi.json`, `/docs` and
clients; tests fuzz the running gateway against them (tests/reliability/test_fuzz_openapi.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class PredictRequest(BaseModel):
    text: str = Field(..., min_length=1, description="The review; empty or whitespace-only is rejected (422).",
                      examples=["this drug worked well with no side effects"])


class PredictBatchRequest(BaseModel):
    texts: list[str] = Field(..., min_length=1, description="Reviews, at most [gateway].max_batch of them.")


class Prediction(BaseModel):
    label: str = Field(..., examples=["Positive"])
    confidence: float = Field(..., ge=0, le=1)
    model_version: str = Field(..., examples=["3"])


class PredictionBatch(BaseModel):
    predictions: list[Prediction]


class ErrorDetail(BaseModel):
    code: str = Field(..., examples=["text_too_long"], description="Stable, machine-readable.")
    message: str = Field(..., description="What was wrong and where, for a person.")


class ErrorBody(BaseModel):
    error: ErrorDetail


def request_body(model: type[BaseModel], max_chars: int, max_batch: int) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its JSON body itself; the configured limits included."""
    schema = model.model_json_schema()
    props = schema["properties"]
    if "text" in props:
        props["text"]["maxLength"] = max_chars
    if "texts" in props:
        props["texts"]["maxItems"] = max_batch
        props["texts"]["items"]["minLength"] = 1
        props["texts"]["items"]["maxLength"] = max_chars
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}, **BASIC_AUTH}


class UpstreamSwitch(BaseModel):
    url: str = Field(..., pattern=r"^https?://", examples=["http://127.0.0.1:8091"])
    model_version: str = Field(..., examples=["4"])


BASIC_AUTH: dict[str, Any] = {"security": [{"basicAuth": []}]}
SECURITY_SCHEMES = {"basicAuth": {"type": "http", "scheme": "basic"}}


def with_security(schema: dict[str, Any]) -> dict[str, Any]:
    """The generated OpenAPI document plus the basic-auth scheme its operations refer to."""
    schema.setdefault("components", {}).setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    return schema


def upstream_body() -> dict[str, Any]:
    schema = UpstreamSwitch.model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}, **BASIC_AUTH}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"model": ErrorBody, "description": description}
    if headers:
        out["headers"] = headers
    return out


RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}

INFERENCE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("The body is not UTF-8 JSON."),
    401: _error("Missing or wrong basic-auth credentials.",
                {"WWW-Authenticate": {"description": 'Basic realm="mlops"', "schema": {"type": "string"}}}),
    413: _error("A text longer than [gateway].max_chars, or more than [gateway].max_batch texts."),
    422: _error("The body has the wrong shape, or a text is empty."),
    502: _error("The predictor answered with an error."),
    503: _error("No ready predictor, or the gateway is at capacity (then with Retry-After).", RETRY_AFTER),
    504: _error("The predictor did not answer within [gateway].timeout_s."),
}

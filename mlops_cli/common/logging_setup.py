"""JSON-lines logs and traces for every service, joined by one request id.

Each log line on stderr is one JSON object carrying the service name, the request id of the request
being handled (from ``request_id_var``) and, when tracing is on, the trace and span ids; every span
started while a request id is set gets it as the ``mlops.request_id`` attribute. So a log line in Loki
leads to its trace in Jaeger and back.

Example::

    configure_json_logging("gateway", "info")
    tracer = setup_tracing("mlops-gateway", cfg.observability.otlp_endpoint)  # no-op when endpoint is ""
    token = request_id_var.set(incoming_request_id(request.headers.get("x-request-id")))
    with tracer.start_as_current_span("predict"):
        log.info("request", extra={"route": "/predict", "status": 200})
    request_id_var.reset(token)

Run uvicorn with ``log_config=None`` so its own loggers go through the same JSON handler.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import uuid
from datetime import datetime, timezone
from typing import Any

REQUEST_ID_HEADER = "x-request-id"
REQUEST_ID_ATTRIBUTE = "mlops.request_id"
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("mlops_request_id", default="")

# A client-supplied id is kept only when it is short and plain, so it cannot inject into log lines.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# LogRecord's own attributes; anything else on a record came from `extra=` and is logged as a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName", "color_message"}


def new_request_id() -> str:
    return uuid.uuid4().hex


def incoming_request_id(header_value: str | None) -> str:
    """The caller's X-Request-ID when it is safe to echo, otherwise a fresh id."""
    if header_value and _SAFE_ID.match(header_value):
        return header_value
    return new_request_id()


class JsonFormatter(logging.Formatter):
    def __init__(self, service_name: str) -> None:
        super().__init__()
        self.service_name = service_name

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service_name,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        entry.update(_trace_ids())
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _trace_ids() -> dict[str, str]:
    if "opentelemetry.trace" not in sys.modules:  # tracing never set up: nothing to join with
        return {}
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return {}
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}


def configure_json_logging(service_name: str, level: str = "info") -> logging.Logger:
    """Route every logger (uvicorn's included) to one JSON-lines handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service_name))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # Third-party chatter at info level would drown the request lines.
    for name in ("httpx", "httpcore", "urllib3", "alembic", "mlflow"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    return root


def logging_dict_config(service_name: str, level: str = "info") -> dict[str, Any]:
    """The same JSON-lines setup as a `logging.config.dictConfig` dict, for servers that (re)configure
    logging themselves from one: `uvicorn.run(log_config=...)`, KServe's `--log_config_file` (as JSON)."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    quiet = {"level": "WARNING"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter", "service_name": service_name}},
        "handlers": {"stderr": handler},
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            **{name: {"handlers": [], "propagate": True} for name in ("uvicorn", "uvicorn.error", "uvicorn.access",
                                                                     "kserve", "kserve.trace")},
            **{name: quiet for name in ("httpx", "httpcore", "urllib3")},
        },
    }


# -- tracing -------------------------------------------------------------------------------------

def build_tracer_provider(service_name: str, exporter: Any, namespace: str = "mlops"):
    """A TracerProvider that exports to `exporter` in batches and stamps spans with the request id."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    class RequestIdSpanProcessor(SpanProcessor):
        def on_start(self, span, parent_context=None) -> None:
            request_id = request_id_var.get()
            if request_id:
                span.set_attribute(REQUEST_ID_ATTRIBUTE, request_id)

    provider = TracerProvider(resource=Resource.create({"service.name": service_name,
                                                        "service.namespace": namespace}))
    provider.add_span_processor(RequestIdSpanProcessor())
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def setup_tracing(service_name: str, otlp_endpoint: str, namespace: str = "mlops"):
    """A tracer exporting OTLP/HTTP to `otlp_endpoint` (e.g. http://localhost:4318); with an empty
    endpoint, OpenTelemetry's no-op tracer, so callers can always write `with tracer.start_as_current_span`."""
    from opentelemetry import trace

    if not otlp_endpoint:
        return trace.NoOpTracer()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    endpoint = otlp_endpoint.rstrip("/")
    if not endpoint.endswith("/v1/traces"):
        endpoint += "/v1/traces"
    provider = build_tracer_provider(service_name, OTLPSpanExporter(endpoint=endpoint), namespace)
    # The global provider can be set once per process; later calls (tests, reloads) reuse the first.
    trace.set_tracer_provider(provider)
    return trace.get_tracer(service_name)


def extract_trace_context(headers: Any):
    """The caller's W3C trace context (traceparent header), so our server span continues its trace."""
    if "opentelemetry.trace" not in sys.modules:
        return None
    from opentelemetry.propagate import extract

    return extract(dict(headers))


def inject_trace_headers(headers: dict[str, str]) -> dict[str, str]:
    """Add traceparent and X-Request-ID to outgoing headers (gateway -> predictor)."""
    request_id = request_id_var.get()
    if request_id:
        headers.setdefault(REQUEST_ID_HEADER, request_id)
    if "opentelemetry.trace" in sys.modules:
        from opentelemetry.propagate import inject

        inject(headers)
    return headers

"""Step 5c: Jaeger all-in-one, receiving the OTLP traces our services export."""

from __future__ import annotations

from typing import Any

from mlops_cli.config.settings import Config

from .objects import container, deployment, service

OTLP_HTTP_PORT = 4318
OTLP_GRPC_PORT = 4317
UI_PORT = 16686


def otlp_endpoint(config: Config) -> str:
    """Where services in the cluster send traces (OTLP/HTTP)."""
    return f"http://jaeger.{config.kubernetes.namespace}.svc.cluster.local:{OTLP_HTTP_PORT}"


def objects(config: Config) -> list[dict[str, Any]]:
    c = container(
        config, "jaeger", "jaeger", config.kubernetes.jaeger_image,
        env=[{"name": "COLLECTOR_OTLP_ENABLED", "value": "true"}, {"name": "SPAN_STORAGE_TYPE", "value": "memory"},
             {"name": "MEMORY_MAX_TRACES", "value": "50000"}],
        port=UI_PORT, probe_path="/",
    )
    c["ports"] += [{"name": "otlp-http", "containerPort": OTLP_HTTP_PORT, "protocol": "TCP"},
                   {"name": "otlp-grpc", "containerPort": OTLP_GRPC_PORT, "protocol": "TCP"}]
    return [
        deployment(config, "jaeger", [c], strategy="Recreate"),
        service(config, "jaeger", {"ui": (UI_PORT, UI_PORT), "otlp-http": (OTLP_HTTP_PORT, OTLP_HTTP_PORT),
                                   "otlp-grpc": (OTLP_GRPC_PORT, OTLP_GRPC_PORT)}),
    ]

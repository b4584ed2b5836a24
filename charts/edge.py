"""Step 4: the public edge: Envoy Gateway (a maintained Gateway API implementation, the one KServe
v0.20 installs), an HTTPS listener with a cert-manager certificate, and basic auth.

ingress-nginx is gone: retired in March 2026 (no more security fixes); v1.11.3 is exposed to
CVE-2025-1974 (unauthenticated remote code execution).

What is public: `https://<ingress_host>/predict` and `/predict/batch`, nothing else (the gateway's
/admin/upstream, /metrics and /readyz are cluster-internal). Plain HTTP on port 80 only redirects.
Basic auth at the edge is an Envoy Gateway SecurityPolicy reading the `.htpasswd` key of the gateway
Secret; Envoy's basic auth accepts only `{SHA}` lines (gateway.envoyproxy.io docs, tasks/security/
basic-auth; SecurityPolicy CRD of v1.8.1), so the gateway app checks the same credentials again itself.
"""

from __future__ import annotations

import math

from typing import Any

from mlops_cli.config.settings import Config

from . import secrets, upstream
from .objects import metadata

CONTROLLER_NAMESPACE = "envoy-gateway-system"   # Envoy Gateway runs its proxies here too
CONTROLLER_NAME = "gateway.envoyproxy.io/gatewayclass-controller"   # api/v1alpha1/envoygateway_types.go
GATEWAY_CLASS = "mlops"
GATEWAY = "mlops-edge"
TLS_SECRET = "mlops-edge-tls"
SELF_SIGNED_ISSUER = "mlops-self-signed"
GATEWAY_API = "gateway.networking.k8s.io/v1"
PUBLIC_PATHS = ("/predict", "/predict/batch")  # what the public entry point routes to the gateway


def objects(config: Config, platform_secrets: secrets.PlatformSecrets | None, *, missing_ok: bool = False) -> list[dict[str, Any]]:
    return [*upstream.load(config, "envoy-gateway", missing_ok=missing_ok), *own_objects(config, platform_secrets)]


def own_objects(config: Config, platform_secrets: secrets.PlatformSecrets | None) -> list[dict[str, Any]]:
    """Ours, on top of Envoy Gateway's install: applied even onto an Envoy Gateway someone else runs
    (`up --reuse-existing`), and deleted first by `down`, while its controller still runs to remove its
    finalizer from the GatewayClass."""
    creds = platform_secrets.gateway if platform_secrets is not None else None
    return [secrets.gateway_auth(config, creds), *certificate(config), gateway_class(), gateway(config), *routes(config),
            basic_auth(config)]


def gateway_class() -> dict[str, Any]:
    return {"apiVersion": GATEWAY_API, "kind": "GatewayClass", "metadata": metadata(GATEWAY_CLASS, "edge"),
            "spec": {"controllerName": CONTROLLER_NAME}}


def certificate(config: Config) -> list[dict[str, Any]]:
    """The listener's certificate from cert-manager: your ClusterIssuer ([kubernetes].tls_issuer), else
    a self-signed one (clients must then trust it explicitly)."""
    k = config.kubernetes
    out: list[dict[str, Any]] = []
    if k.tls_issuer:
        issuer = {"name": k.tls_issuer, "kind": "ClusterIssuer", "group": "cert-manager.io"}
    else:
        out.append({"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": metadata(SELF_SIGNED_ISSUER, "edge", k.namespace),
                    "spec": {"selfSigned": {}}})
        issuer = {"name": SELF_SIGNED_ISSUER, "kind": "Issuer", "group": "cert-manager.io"}
    out.append({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": metadata(GATEWAY, "edge", k.namespace),
                "spec": {"secretName": TLS_SECRET, "dnsNames": [k.ingress_host], "issuerRef": issuer}})
    return out


def gateway(config: Config) -> dict[str, Any]:
    k = config.kubernetes
    return {
        "apiVersion": GATEWAY_API, "kind": "Gateway", "metadata": metadata(GATEWAY, "edge", k.namespace),
        "spec": {"gatewayClassName": GATEWAY_CLASS, "listeners": [
            {"name": "https", "protocol": "HTTPS", "port": 443, "hostname": k.ingress_host,
             "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": TLS_SECRET}]},
             "allowedRoutes": {"namespaces": {"from": "Same"}}},
            {"name": "http", "protocol": "HTTP", "port": 80, "hostname": k.ingress_host,
             "allowedRoutes": {"namespaces": {"from": "Same"}}},
        ]},
    }


def routes(config: Config) -> list[dict[str, Any]]:
    from .gateway import SERVICE_PORT

    k = config.kubernetes
    public = {
        "apiVersion": GATEWAY_API, "kind": "HTTPRoute", "metadata": metadata("gateway", "gateway", k.namespace),
        "spec": {"parentRefs": [{"name": GATEWAY, "sectionName": "https"}], "hostnames": [k.ingress_host],
                 "rules": [{"matches": [{"path": {"type": "Exact", "value": path}} for path in PUBLIC_PATHS],
                            "backendRefs": [{"name": "gateway", "port": SERVICE_PORT}],
                            "timeouts": {"request": request_timeout(config)}}]},
    }
    redirect = {
        "apiVersion": GATEWAY_API, "kind": "HTTPRoute", "metadata": metadata("gateway-https-redirect", "edge", k.namespace),
        "spec": {"parentRefs": [{"name": GATEWAY, "sectionName": "http"}], "hostnames": [k.ingress_host],
                 "rules": [{"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]}]},
    }
    return [public, redirect]


def request_timeout(config: Config) -> str:
    """The public route's timeout, longer than the gateway's predictor timeout (which outlasts a predictor
    cold start). Without one Envoy answers 504 after its route default of 15 s (Envoy Gateway sets a route
    timeout only from the HTTPRoute: internal/xds/translator/route.go getEffectiveRequestTimeout, v1.8.3;
    Envoy's RouteAction.timeout defaults to 15 s), before a predictor started from zero can answer."""
    return f"{math.ceil(config.kubernetes.gateway_predictor_timeout_s) + 10}s"


def basic_auth(config: Config) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "SecurityPolicy",
        "metadata": metadata("gateway-basic-auth", "edge", config.kubernetes.namespace),
        "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "gateway"}],
                 "basicAuth": {"users": {"name": secrets.GATEWAY_AUTH}}},
    }

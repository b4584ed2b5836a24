"""Which predictors the gateway may be switched to (`PUT /admin/upstream`): the platform's own, nothing else.

An upstream receives every review sent to `/predict`, so it is a place data can leak to. Allowed:
- on the local target, a loopback address on a port `mlops deploy` gives predictors
  ([local].predictor_port and the PORT_RANGE after it: targets/local_serving.py takes the next free one);
- in a cluster, the InferenceService's own predictor Service (`<model>-predictor.<namespace>`, the
  address KServe reports and the gateway is started with: charts/inference_service.py).

    allowed_upstream(cfg, "http://127.0.0.1:8091")     # None: fine
    allowed_upstream(cfg, "http://example.com:80")     # "... is not one of the platform's predictors ..."
"""

from __future__ import annotations

import ipaddress

from ..config.settings import Config

PORT_RANGE = 200  # predictor ports: [local].predictor_port .. + PORT_RANGE - 1 (platform/processes.free_port_from)


def cluster_predictor_host(config: Config) -> str:
    """`<model>-predictor.<ns>.svc.cluster.local`: the InferenceService's cluster-local address, as
    charts/inference_service.py's predictor_host renders it (services may not import charts: the gateway
    image has no charts; tests/test_gateway.py checks that the two agree)."""
    return f"{config.serving.model_name}-predictor.{config.kubernetes.namespace}.svc.cluster.local"


def allowed_upstream(config: Config, url: str) -> str | None:
    """None when `url` names one of the platform's predictors; else why it is refused."""
    import httpx

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        return f"{url!r} is not a URL"
    host = parsed.host.lower()
    first, last = config.local.predictor_port, config.local.predictor_port + PORT_RANGE - 1
    if _loopback(host) and parsed.scheme == "http" and parsed.port is not None and first <= parsed.port <= last:
        return None
    cluster = cluster_predictor_host(config)
    names = {cluster, cluster.removesuffix(".cluster.local"), cluster.removesuffix(".svc.cluster.local")}
    if host in names and parsed.scheme == "http" and parsed.port in (None, 80):
        return None
    return (f"{url} is not one of the platform's predictors: a loopback address on ports {first}-{last} "
            f"([local].predictor_port), or http://{cluster}")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

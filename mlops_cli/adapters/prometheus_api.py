"""Instant queries against a Prometheus server's HTTP API (GET /api/v1/query).

The answer is returned as Prometheus sent it (monitoring/canary_analysis.py reads it); transport failures and
non-JSON answers become one PreflightError naming the URL. Prometheus answers 400/422/503 with the same
JSON envelope and "status": "error" (prometheus.io/docs/prometheus/latest/querying/api, "Format overview"),
so those bodies are returned for the caller to report, not raised here.
"""

from __future__ import annotations

from typing import Any

from ..common.errors import PreflightError, UnreachableError


class PrometheusApi:
    def __init__(self, base_url: str, *, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def query(self, promql: str) -> dict[str, Any]:
        import httpx

        url = f"{self.base_url}/api/v1/query"
        try:
            response = httpx.get(url, params={"query": promql}, timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise UnreachableError(f"cannot reach Prometheus at {self.base_url}: {exc}",
                                 hint="set [canary].prometheus_url (e.g. after `kubectl -n mlops port-forward svc/prometheus 9090`)") from None
        try:
            body = response.json()
        except ValueError:
            raise PreflightError(f"{url} answered HTTP {response.status_code} without a Prometheus JSON body",
                                 hint="is [canary].prometheus_url the Prometheus server itself (not Grafana or a proxy login page)?") from None
        if not isinstance(body, dict):
            raise PreflightError(f"{url} answered {body!r}, not a Prometheus API envelope")
        return body

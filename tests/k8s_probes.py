"""Readiness probes as a kubelet would run them, for the emulator's Deployments.

Our own gateway is probed for real: the emulator builds the gateway app from the pod's container
(its command's --predictor-url, its MLOPS_* env, its volume mounts mapped to a scratch directory)
with `mlops_cli.services.gateway.create_app` and calls the probe's path in-process. So a probe path
means exactly what the gateway's code makes of it: `/readyz` answers 503 while no predictor answers
(e.g. at `up`, before any InferenceService exists), `/healthz` answers 200 once the process runs.
The gateway's calls to the predictor go through `ClusterNetwork`, which resolves `*.svc.cluster.local`
against the emulator's objects: a Ready Knative Service answers the KServe V1/V2 health routes
(kserve/kserve python/kserve/kserve/protocol/rest/v1_endpoints.py `models` / `model_ready`: 200 with
{"name", "ready": true} once the model is loaded); a name with no Service is a DNS failure.

Other images (MLflow, Prometheus, upstream controllers) cannot run here: their probe passes once the
pod runs, which is what their probe paths (/health, /-/ready, ...) report for a started process.
A probe succeeds on 200 <= status < 400 (kubernetes.io/docs/concepts/configuration/liveness-readiness-startup-probes).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import httpx

GATEWAY_MODULE = "mlops_cli.services.gateway"


class ClusterNetwork(httpx.AsyncBaseTransport):
    """Cluster DNS and Services, answered from the emulator's store (see the module docstring)."""

    def __init__(self, ready_ksvc: Callable[[str, str], bool | None]) -> None:
        self.ready_ksvc = ready_ksvc  # (name, namespace) -> True ready, False exists, None no such Service

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if not host.endswith(".svc.cluster.local"):
            raise httpx.ConnectError(f"[Errno -2] Name or service not known: {host}", request=request)
        name, namespace = host.split(".")[:2]
        ready = self.ready_ksvc(name, namespace)
        if ready is None:
            raise httpx.ConnectError(f"[Errno -2] Name or service not known: {host}", request=request)
        if not ready:
            return httpx.Response(503, text="no healthy upstream", request=request)  # Knative's activator, no ready revision
        path = request.url.path
        if path.startswith("/v1/models/") or path.startswith("/v2/models/"):
            model = path.split("/")[3]
            return httpx.Response(200, json={"name": model, "ready": True}, request=request)
        if path in {"/v2/health/ready", "/v2/health/live", "/"}:
            return httpx.Response(200, json={"status": "alive"}, request=request)
        return httpx.Response(404, json={"error": f"no route {path}"}, request=request)


class EmulatedHop:
    """The gateway's predictor hop (mlops_cli/services/http_hop.py's interface) over `ClusterNetwork`."""

    def __init__(self, network: ClusterNetwork) -> None:
        self._http = httpx.AsyncClient(transport=network)

    async def request(self, method, url, *, content=None, headers=None, timeout_s=None):
        from mlops_cli.services.http_hop import HopResponse, HopTimeout, HopUnreachable

        try:
            r = await self._http.request(method, url, content=content, headers=headers, timeout=timeout_s or 5.0)
        except httpx.TimeoutException as exc:
            raise HopTimeout(str(exc)) from None
        except httpx.TransportError as exc:
            raise HopUnreachable(type(exc).__name__) from None
        return HopResponse(r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.content)

    async def close(self) -> None:
        await self._http.aclose()


class GatewayPod:
    """One gateway container, built from its pod spec, probed in-process."""

    def __init__(self, container: dict[str, Any], network: ClusterNetwork) -> None:
        from mlops_cli.config.loading import load_config
        from mlops_cli.services.gateway import GatewaySettings, create_app

        self._scratch = tempfile.TemporaryDirectory(prefix="emu-pod-")
        root = Path(self._scratch.name)
        mounts = sorted((m["mountPath"] for m in container.get("volumeMounts") or []), key=len, reverse=True)

        def on_volume(value: str) -> str:  # the pod's volumes are directories under its scratch root
            for mount in mounts:
                if value == mount or value.startswith(mount.rstrip("/") + "/"):
                    return str(root / value.lstrip("/"))
            return value

        env = {e["name"]: on_volume(str(e["value"])) for e in container.get("env") or [] if "value" in e}
        # Not emulated: span export. The gateway would install a process-wide TracerProvider exporting to
        # Jaeger's cluster address, which in-process means the test runner's tracer, retrying against DNS.
        env.pop("MLOPS_OBSERVABILITY__OTLP_ENDPOINT", None)
        (root / "empty.toml").write_text("")
        command = [*(container.get("command") or []), *(container.get("args") or [])]
        config = load_config(root / "empty.toml", env=env)  # a bad env var fails here, as the container would crash
        self.app = create_app(GatewaySettings(config, _flag(command, "--predictor-url"), _flag(command, "--model-version") or "", None))
        client = self.app.state.client
        if not hasattr(client, "hop"):
            raise AssertionError("the emulator routes the gateway's predictor calls through PredictorClient.hop: update tests/k8s_probes.py")
        client.hop = EmulatedHop(network)

    async def get(self, path: str) -> int:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://pod") as http:
            return (await http.get(path)).status_code

    def close(self) -> None:
        self._scratch.cleanup()


def is_gateway(container: dict[str, Any]) -> bool:
    return GATEWAY_MODULE in (container.get("command") or []) + (container.get("args") or [])


def _flag(command: list[str], name: str) -> str | None:
    return command[command.index(name) + 1] if name in command[:-1] else None


def probe_ok(status: int) -> bool:
    return 200 <= status < 400

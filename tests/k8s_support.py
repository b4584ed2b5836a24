"""Test support for the kubernetes target: an API server emulator, a kubeconfig for it, an offline bundle.

`ApiServer` extends kmock's `KubernetesEmulator` where it falls short of what the installer needs:
namespaces as objects, server-side apply (PATCH application/apply-patch+yaml) that creates, PUT,
uid/resourceVersion/generation, label-selected lists, and tiny "controllers" that mark CRDs
Established, Deployments Available and InferenceServices Ready. Faults (a status for the n-th
matching request) and stuck Deployments are injected per test.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml

REPO = Path(__file__).resolve().parents[1]
UPSTREAM = REPO.parent / "shared" / "upstream"


@dataclass
class Fault:
    method: str
    path_contains: str
    status: int
    after: int = 0          # let this many matching requests through first
    times: int = 1          # then fail this many
    seen: int = field(default=0)


def _status(code: int, reason: str, message: str) -> aiohttp.web.Response:
    body = {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "code": code,
            "reason": reason, "message": message}
    return aiohttp.web.json_response(body, status=code)


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesEmulator):
    store: dict[tuple[str, str, str, str], dict[str, Any]] = attrs.field(factory=dict)  # (apiVersion, plural, ns, name)
    faults: list[Fault] = attrs.field(factory=list)
    stuck: set[str] = attrs.field(factory=set)       # Deployment names that never become Available
    writes: list[tuple[str, str]] = attrs.field(factory=list)  # (method, path) of every mutating request
    pod_logs: dict[str, str] = attrs.field(factory=dict)       # pod name -> its log text
    isvc_ready: bool = attrs.field(default=True)               # False: InferenceServices never get Ready
    _rv: int = attrs.field(default=0)

    def _get_resources(self) -> list[kmock.resource]:
        found = set(super()._get_resources())
        for api_version, plural, _, _ in self.store:
            group, _, version = api_version.rpartition("/")
            found.add(kmock.resource(group=group, version=version, plural=plural))
        return list(found)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        parts = request.url.path.strip("/").split("/")
        if len(parts) == 7 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods" and parts[6] == "log":
            if parts[5] not in self.pod_logs:
                return _status(404, "NotFound", f'pods "{parts[5]}" not found')
            lines = self.pod_logs[parts[5]].splitlines()[-int(request.params.get("tailLines", "100000")):]
            return aiohttp.web.Response(text="".join(line + "\n" for line in lines), content_type="text/plain")
        target = self._target(request)
        if target is None:
            return await super()._handle(request)  # discovery and anything else kmock serves itself
        method = str(request.method.value).upper()
        path = request.url.path
        for fault in self.faults:
            if fault.method == method and fault.path_contains in path:
                fault.seen += 1
                if fault.after < fault.seen <= fault.after + fault.times:
                    reason = {409: "Conflict", 500: "InternalError"}.get(fault.status, "Injected")
                    return _status(fault.status, reason, f"injected {fault.status} for {method} {path}")
        if method != "GET":
            self.writes.append((method, path))
        api_version, plural, namespace, name = target
        if method == "GET" and name is None:
            return aiohttp.web.json_response(self._list(api_version, plural, namespace, request.params.get("labelSelector", "")))
        key = (api_version, plural, namespace or "", name or "")
        if method == "GET":
            if key not in self.store:
                return _status(404, "NotFound", f'{plural} "{name}" not found')
            return aiohttp.web.json_response(self.store[key])
        if method == "DELETE":
            if key not in self.store:
                return _status(404, "NotFound", f'{plural} "{name}" not found')
            return aiohttp.web.json_response(self.store.pop(key))
        body = request.data if isinstance(request.data, dict) else json.loads(request.body or b"{}")
        if method == "POST":
            name = body["metadata"]["name"]
            key = (api_version, plural, namespace or "", name)
            if key in self.store:
                return _status(409, "AlreadyExists", f'{plural} "{name}" already exists')
            return aiohttp.web.json_response(self._write(key, body), status=201)
        if method == "PATCH" and "apply-patch" in request.headers.get("Content-Type", ""):
            if not request.params.get("fieldManager"):
                return _status(400, "BadRequest", "fieldManager is required for apply requests")
            created = key not in self.store
            return aiohttp.web.json_response(self._write(key, body), status=201 if created else 200)
        if method == "PATCH":  # merge patch of an existing object
            if key not in self.store:
                return _status(404, "NotFound", f'{plural} "{name}" not found')
            merged = _merge(copy.deepcopy(self.store[key]), body)
            return aiohttp.web.json_response(self._write(key, merged))
        if method == "PUT":
            return aiohttp.web.json_response(self._write(key, body))
        return _status(405, "MethodNotAllowed", method)

    def _target(self, request: kmock.Request) -> tuple[str, str, str | None, str | None] | None:
        parts = request.url.path.strip("/").split("/")
        if parts[:1] == ["api"] and len(parts) >= 2:
            api_version, rest = parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            api_version, rest = f"{parts[1]}/{parts[2]}", parts[3:]
        else:
            return None
        if not rest:
            return None
        if rest[0] == "namespaces" and len(rest) <= 2:
            return api_version, "namespaces", None, rest[1] if len(rest) == 2 else None
        namespace = None
        if rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 2:  # subresources (status, log, scale): not needed by the installer
            return None
        return api_version, rest[0], namespace, rest[1] if len(rest) == 2 else None

    def _list(self, api_version: str, plural: str, namespace: str | None, selector: str) -> dict[str, Any]:
        wanted = dict(term.split("=", 1) for term in selector.split(",") if "=" in term)
        items = [obj for (av, pl, ns, _), obj in self.store.items()
                 if av == api_version and pl == plural and (namespace is None or ns == namespace)
                 and all((obj["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())]
        return {"apiVersion": api_version, "kind": "List", "metadata": {"resourceVersion": str(self._rv)}, "items": items}

    def _write(self, key: tuple[str, str, str, str], body: dict[str, Any]) -> dict[str, Any]:
        old = self.store.get(key)
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        if old is None:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = "2026-11-26T00:00:00Z"
            meta["generation"] = 1
        else:
            meta["uid"] = old["metadata"]["uid"]
            meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
            changed = old.get("spec") != obj.get("spec")
            meta["generation"] = old["metadata"]["generation"] + (1 if changed else 0)
            obj.setdefault("status", old.get("status", {}))
        if obj.get("kind") == "Secret" and "stringData" in obj:
            import base64

            data = obj.setdefault("data", {})
            data.update({k: base64.b64encode(v.encode()).decode() for k, v in obj.pop("stringData").items()})
        self._react(key, obj)
        self.store[key] = obj
        return obj

    def _react(self, key: tuple[str, str, str, str], obj: dict[str, Any]) -> None:
        """What the controllers of a real cluster would do, instantly."""
        kind, name, ns = obj.get("kind"), obj["metadata"]["name"], key[2]
        if kind == "CustomResourceDefinition":
            obj["status"] = {"conditions": [{"type": "Established", "status": "True"}]}
        elif kind == "Deployment" and name in self.stuck:
            obj["status"] = {"replicas": 1, "readyReplicas": 0, "conditions": [
                {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                 "message": "Deployment does not have minimum availability."}]}
            event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": f"{name}-abc.1", "namespace": ns},
                     "involvedObject": {"kind": "Pod", "name": f"{name}-abc", "namespace": ns},
                     "reason": "FailedScheduling", "message": "0/1 nodes are available: insufficient memory.",
                     "lastTimestamp": "2026-11-26T00:00:01Z"}
            self.store[("v1", "events", ns, event["metadata"]["name"])] = event
        elif kind == "Deployment":
            obj["status"] = {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1,
                             "observedGeneration": obj["metadata"]["generation"],
                             "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]}
        elif kind == "InferenceService":
            canary = obj["spec"]["predictor"].get("canaryTrafficPercent")
            traffic = [{"latestRevision": True, "percent": 100 if canary is None else canary}]
            if canary is not None:
                traffic.append({"latestRevision": False, "percent": 100 - canary})
            # With disableIstioVirtualHost (charts/kserve.py) KServe reports the predictor's own Knative
            # addresses (ingress_reconciler.go getHostPrefix); cluster-local: no public URL at all.
            local = (obj["metadata"].get("labels") or {}).get("networking.knative.dev/visibility") == "cluster-local"
            obj["status"] = {"url": f"http://{name}-predictor.{ns}.{'svc.cluster.local' if local else 'example.com'}",
                             "observedGeneration": obj["metadata"]["generation"],
                             "address": {"url": f"http://{name}-predictor.{ns}.svc.cluster.local"},
                             "conditions": [{"type": "Ready", "status": "True"} if self.isvc_ready else
                                            {"type": "Ready", "status": "False", "reason": "RevisionMissing",
                                             "message": "Revision failed: image pull back-off"}],
                             "components": {"predictor": {"traffic": traffic}}}

    def objects_of(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.store.values() if o.get("kind") == kind]

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        return next((o for o in self.objects_of(kind) if o["metadata"]["name"] == name), None)


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    for k, v in patch.items():
        if v is None:
            base.pop(k, None)
        elif isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
    return base


class EmulatorThread:
    """Runs an ApiServer on loopback in its own event loop, so sync code (the installer) can call it."""

    def __init__(self) -> None:
        self.server: ApiServer | None = None
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with ApiServer() as handler, kmock.Server(handler) as srv:
            self.server, self.url = handler, str(srv.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> "EmulatorThread":
        self._thread.start()
        assert self._ready.wait(15), "the API server emulator did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def write_kubeconfig(path: Path, server: str, context: str = "emulator") -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "emu", "cluster": {"server": server}}],
        "users": [{"name": "tester", "user": {"token": "test-token"}}],
        "contexts": [{"name": context, "context": {"cluster": "emu", "user": "tester"}}],
    }))
    return path


# --- offline bundle: small, valid stand-ins for the upstream release manifests -----------------------

def _deployment(name: str, namespace: str, image: str) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {
                "containers": [{"name": name, "image": image,
                                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}}}]}}}}


def _crd(group: str, kind: str, plural: str, version: str, scope: str = "Namespaced") -> dict[str, Any]:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": scope,
                     "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
                     "versions": [{"name": version, "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                         "type": "object", "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}]}}


def _ns(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _upstream(relative: str) -> list[dict[str, Any]]:
    """Real upstream release files (../shared/upstream, see its README) where the bundle needs them."""
    return [d for d in yaml.safe_load_all((UPSTREAM / relative).read_text()) if d]


def bundle_documents() -> dict[str, list[dict[str, Any]]]:
    # A small stand-in CRD keeps the bundle fast; tests/test_charts_schema.py validates what we render
    # against the real v0.20.0 CRD (../shared/upstream/kserve-v0.20.0/kserve-crds.yaml).
    isvc_crd = _crd("serving.kserve.io", "InferenceService", "inferenceservices", "v1beta1")
    return {
        "cert-manager": [_ns("cert-manager"), _crd("cert-manager.io", "Issuer", "issuers", "v1"),
                         _crd("cert-manager.io", "Certificate", "certificates", "v1"),
                         {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "cert-manager", "namespace": "cert-manager"}},
                         _deployment("cert-manager-webhook", "cert-manager", "quay.io/jetstack/cert-manager-webhook:v1.16.2")],
        "knative-crds": [_crd("serving.knative.dev", "Service", "services", "v1")],
        "knative-core": [_ns("knative-serving"),
                         {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config-network", "namespace": "knative-serving"},
                          "data": {"_example": '# stand-in for knative/networking config-network.yaml\n'
                                                'ingress-class: "istio.ingress.networking.knative.dev"\n'}},
                         *_upstream("knative-serving-v1.21.1/features.yaml"),
                         _deployment("controller", "knative-serving", "gcr.io/knative-releases/controller:v1.16.0")],
        "kourier": [_ns("kourier-system"), _deployment("3scale-kourier-gateway", "kourier-system", "docker.io/envoyproxy/envoy:v1.31")],
        "kserve": [_ns("kserve"), isvc_crd, *_upstream("kserve-v0.20.0/inferenceservice-config.yaml"),
                   _crd("serving.kserve.io", "ClusterServingRuntime", "clusterservingruntimes", "v1alpha1", scope="Cluster"),
                   {"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": "selfsigned-issuer", "namespace": "kserve"},
                    "spec": {"selfSigned": {}}},
                   _deployment("kserve-controller-manager", "kserve", "kserve/kserve-controller:v0.15.2")],
        "kserve-runtimes": [{"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ClusterServingRuntime",
                             "metadata": {"name": "kserve-huggingfaceserver"},
                             "spec": {"supportedModelFormats": [{"name": "huggingface", "version": "1"}],
                                      "containers": [{"name": "kserve-container", "image": "kserve/huggingfaceserver:v0.15.2"}]}}],
        "envoy-gateway": [_ns("envoy-gateway-system"),
                          _crd("gateway.networking.k8s.io", "GatewayClass", "gatewayclasses", "v1", scope="Cluster"),
                          _crd("gateway.networking.k8s.io", "Gateway", "gateways", "v1"),
                          _crd("gateway.networking.k8s.io", "HTTPRoute", "httproutes", "v1"),
                          _crd("gateway.envoyproxy.io", "SecurityPolicy", "securitypolicies", "v1alpha1"),
                          _deployment("envoy-gateway", "envoy-gateway-system", "docker.io/envoyproxy/gateway:v1.8.1")],
    }


def build_bundle(directory: Path) -> dict[str, str]:
    """Writes the bundle; returns the `[kubernetes]` sha256 pins that match it."""
    from charts.upstream import bundle_pins

    directory.mkdir(parents=True, exist_ok=True)
    for key, docs in bundle_documents().items():
        (directory / f"{key}.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return bundle_pins(directory)


def kubernetes_toml(bundle: Path, pins: dict[str, str], kubeconfig: Path | None = None, **extra: Any) -> str:
    lines = ["[kubernetes]", f'offline_bundle = "{bundle}"']
    if kubeconfig is not None:
        lines.append(f'kubeconfig = "{kubeconfig}"')
    lines += [f'{k} = "{v}"' for k, v in pins.items()]
    lines += [f"{k} = {_toml(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f'"{k}" = {_toml(v)}' for k, v in value.items()) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)

"""An API server emulator for the kubernetes target's tests, and a kubeconfig for it.

`ApiServer` extends kmock's `KubernetesEmulator` into a small cluster: namespaces as objects,
server-side apply (PATCH application/apply-patch+yaml) that creates, PUT, uid/resourceVersion/
generation, label-selected lists, custom resources served only once their CRD is Established, deletes
that honour finalizers, the NamespaceLifecycle admission plugin, and the controllers of
tests/k8s_cluster_controllers.py (CRDs, namespaces, garbage collection, volumes, Deployments with real
readiness probes) and tests/k8s_serving_controllers.py (KServe, Knative), which run on their own tick
after a request, never inside it.

What stays emulated, and why: the real control plane (tests/controlplane.py) runs the real admission,
controllers, Knative and KServe, but
- answers no fault on request: a status for the n-th matching request (`Fault`), and records every write
  (`writes`: a dry run or a refused `up` writes nothing);
- keeps no Deployment unavailable for a test (`stuck`), and has no cluster without a default
  StorageClass (`without_default_storage_class`, EKS from 1.30 on);
- runs no data plane: no container runs there, so the gateway's readiness probe against the real gateway
  app, a crashing container, pods' logs (`pod_logs`) and the edge's HTTPS (tests/k8s_probes.py) are here.
The tests of those cases are tests/test_k8s_install.py, the EKS teardown's and the lock file's; its KServe
and Knative stay for those that deploy (the gateway's probe needs a predictor; a canary on a canary,
`status` of a split and the served runtimes are not on the real plane yet), and refuse what the real
webhooks refuse (tests/k8s_knative_admission.py). What the real control plane proves (up twice, deploy,
canary, promote, a failing revision's rollback, down --purge: tests/test_real_flow.py; Knative's
admission: tests/test_real_knative.py) has no emulator test left, nor the code only those used (a revision
that never gets Ready, the traffic log, the store snapshot).
"""

from __future__ import annotations

import asyncio
import base64
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

from tests.k8s_cluster_controllers import CRD_FINALIZER, DEFAULT_CLASS_ANNOTATION, Timing
from tests.k8s_serving_controllers import ISVC, KSERVE_CONTROLLER, ServingControllers

# API groups the API server serves itself; any other group needs an Established CRD.
BUILTIN_GROUPS = {"", "apps", "batch", "rbac.authorization.k8s.io", "networking.k8s.io", "autoscaling", "policy",
                  "apiextensions.k8s.io", "admissionregistration.k8s.io", "apiregistration.k8s.io", "scheduling.k8s.io",
                  "storage.k8s.io", "coordination.k8s.io", "events.k8s.io", "discovery.k8s.io"}


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


def _seed() -> list[tuple[tuple[str, str, str, str], dict[str, Any]]]:
    """What a fresh kind cluster holds that our code may meet: its namespaces and its default StorageClass."""
    out = [(("v1", "namespaces", "", n), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}})
           for n in ("default", "kube-system", "kube-public")]
    out.append((("storage.k8s.io/v1", "storageclasses", "", "standard"), {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "provisioner": "rancher.io/local-path",
        "metadata": {"name": "standard", "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}}}))
    return out


@attrs.define(kw_only=True)
class ApiServer(ServingControllers, kmock.KubernetesEmulator):
    store: dict[tuple[str, str, str, str], dict[str, Any]] = attrs.field(factory=dict)  # (apiVersion, plural, ns, name)
    faults: list[Fault] = attrs.field(factory=list)
    stuck: set[str] = attrs.field(factory=set)       # Deployment names that never become Available
    writes: list[tuple[str, str]] = attrs.field(factory=list)  # (method, path) of every mutating request
    pod_logs: dict[str, str] = attrs.field(factory=dict)       # pod name -> its log text
    timing: Timing = attrs.field(factory=Timing)
    lock: Any = attrs.field(factory=threading.RLock)
    _rv: int = attrs.field(default=0)
    _ts: int = attrs.field(default=0)
    _clock: dict[str, float] = attrs.field(factory=dict)
    _rollouts: dict[str, dict[str, Any]] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for key, obj in _seed():
            self._put(key, obj)

    def without_default_storage_class(self) -> None:
        """An EKS cluster from 1.30 on: StorageClass gp2 exists but is not the default."""
        with self.lock:
            self.store.pop(("storage.k8s.io/v1", "storageclasses", "", "standard"), None)
            self._put(("storage.k8s.io/v1", "storageclasses", "", "gp2"), {
                "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "provisioner": "kubernetes.io/aws-ebs",
                "metadata": {"name": "gp2"}})

    def _get_resources(self) -> list[kmock.resource]:
        found = set(super()._get_resources())
        for api_version, plural, _, _ in list(self.store):
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
        body = None
        if method in {"POST", "PATCH", "PUT"}:
            body = request.data if isinstance(request.data, dict) else json.loads(request.body or b"{}")
        with self.lock:
            return self._serve(method, target, path, body, request)

    def _serve(self, method: str, target: tuple[str, str, str | None, str | None], path: str, body: Any,
               request: kmock.Request) -> aiohttp.web.Response:
        api_version, plural, namespace, name = target
        refusal = self._not_served(api_version, plural, method)
        if refusal is not None:
            return refusal
        if method != "GET":
            self.writes.append((method, path))
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
            return aiohttp.web.json_response(self._delete(key))
        if method == "POST":
            name = body["metadata"]["name"]
            key = (api_version, plural, namespace or "", name)
            if key in self.store:
                return _status(409, "AlreadyExists", f'{plural} "{name}" already exists')
        if key not in self.store:  # a create: admission plugins and webhooks have their say
            refusal = self._admit_create(api_version, plural, namespace, key[3])
            if refusal is not None:
                return refusal
        if method == "POST":
            return aiohttp.web.json_response(self._write(key, body), status=201)
        if method == "PATCH" and "apply-patch" in request.headers.get("Content-Type", ""):
            if not request.params.get("fieldManager"):
                return _status(400, "BadRequest", "fieldManager is required for apply requests")
            created = key not in self.store
            return aiohttp.web.json_response(self._write(key, body, manager=request.params["fieldManager"]), status=201 if created else 200)
        if method == "PATCH":  # merge patch of an existing object
            if key not in self.store:
                return _status(404, "NotFound", f'{plural} "{name}" not found')
            merged = _merge(copy.deepcopy(self.store[key]), body)
            return aiohttp.web.json_response(self._write(key, merged))
        if method == "PUT":
            return aiohttp.web.json_response(self._write(key, body))
        return _status(405, "MethodNotAllowed", method)

    def _not_served(self, api_version: str, plural: str, method: str) -> aiohttp.web.Response | None:
        """A custom resource's API exists only while its CRD is Established (404 like a real API server)."""
        group = api_version.rpartition("/")[0]
        if group in BUILTIN_GROUPS:
            return None
        version = api_version.rpartition("/")[2]
        for crd in self.store.values():
            if crd.get("kind") == "CustomResourceDefinition" and crd["spec"]["group"] == group \
                    and crd["spec"]["names"]["plural"] == plural and any(v["name"] == version for v in crd["spec"]["versions"]):
                established = any(c.get("type") == "Established" and c.get("status") == "True"
                                  for c in (crd.get("status") or {}).get("conditions") or [])
                if not established:
                    break
                if crd["metadata"].get("deletionTimestamp") and method in {"POST", "PATCH", "PUT"}:
                    return _status(405, "MethodNotAllowed", f"create not allowed while custom resource definition is terminating")
                return None
        return _status(404, "NotFound", "the server could not find the requested resource")

    def _admit_create(self, api_version: str, plural: str, namespace: str | None, name: str) -> aiohttp.web.Response | None:
        if namespace:
            ns = self.store.get(("v1", "namespaces", "", namespace))
            if ns is None:
                return _status(404, "NotFound", f'namespaces "{namespace}" not found')
            if ns["metadata"].get("deletionTimestamp"):
                return _status(403, "Forbidden", f'{plural} "{name}" is forbidden: unable to create new content in namespace '
                                                 f"{namespace} because it is being terminated")
        if (api_version, plural) == ISVC and not self._running(*KSERVE_CONTROLLER):
            # KServe's validating webhook (failurePolicy Fail) has no endpoint while its controller is down
            return _status(500, "InternalError", 'Internal error occurred: failed calling webhook '
                                                 '"inferenceservice.kserve-webhook-server.validator": failed to call webhook: '
                                                 'no endpoints available for service "kserve-webhook-server-service"')
        return None

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

    def _bump(self, obj: dict[str, Any]) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)

    def _put(self, key: tuple[str, str, str, str], obj: dict[str, Any]) -> dict[str, Any]:
        """A write by a controller (or the seed): same bookkeeping as a client's write."""
        return self._write(key, obj)

    def _write(self, key: tuple[str, str, str, str], body: dict[str, Any], manager: str | None = None) -> dict[str, Any]:
        import time

        old = self.store.get(key)
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        self._bump(obj)
        if old is None:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = "2026-11-27T00:00:00Z"
            meta["generation"] = 1
            self._clock[meta["uid"]] = time.monotonic()
            if obj.get("kind") == "CustomResourceDefinition":
                meta["finalizers"] = [CRD_FINALIZER]
        else:
            for kept in ("uid", "creationTimestamp", "deletionTimestamp", "ownerReferences"):
                if kept in old["metadata"] and kept not in meta:
                    meta[kept] = old["metadata"][kept]
            if "finalizers" not in meta and old["metadata"].get("finalizers"):
                meta["finalizers"] = old["metadata"]["finalizers"]  # apply does not drop other managers' finalizers
            changed = old.get("spec") != obj.get("spec")
            meta["generation"] = old["metadata"]["generation"] + (1 if changed else 0)
            obj.setdefault("status", old.get("status", {}))
        if manager:
            meta["managedFields"] = [{"manager": manager, "operation": "Apply"}]
        if obj.get("kind") == "Secret" and "stringData" in obj:
            data = obj.setdefault("data", {})
            data.update({k: base64.b64encode(v.encode()).decode() for k, v in obj.pop("stringData").items()})
        self.store[key] = obj
        return obj

    def _delete(self, key: tuple[str, str, str, str]) -> dict[str, Any]:
        """Delete as the API server does: an object with finalizers only gets a deletionTimestamp."""
        import time

        obj = self.store[key]
        meta = obj["metadata"]
        if obj.get("kind") == "Namespace":
            meta.setdefault("finalizers", [])
            obj.setdefault("spec", {})["finalizers"] = ["kubernetes"]
            obj["status"] = {**(obj.get("status") or {}), "phase": "Terminating"}
        if meta.get("finalizers") or obj.get("kind") == "Namespace":
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = "2026-11-27T00:00:01Z"
                self._clock["del-" + meta["uid"]] = time.monotonic()
                self._bump(obj)
            return obj
        return self.store.pop(key)

    def objects_of(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [copy.deepcopy(o) for o in self.store.values() if o.get("kind") == kind]

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        return next((o for o in self.objects_of(kind) if o["metadata"]["name"] == name), None)

    def put(self, key: tuple[str, str, str, str], obj: dict[str, Any]) -> None:
        """An object someone else created (another installer, a pod): no field manager of ours."""
        with self.lock:
            self._write(key, obj)

    def export(self) -> dict[str, Any]:
        """The cluster's state, to start another emulator from (an install is paid for once per module)."""
        with self.lock:
            return {"store": copy.deepcopy(self.store), "rv": self._rv,
                    "rollouts": {uid: {k: v for k, v in r.items() if k != "pods"} for uid, r in self._rollouts.items()}}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from an exported state: every pending delay has elapsed, probes run again."""
        with self.lock:
            self.store.clear()
            self.store.update(copy.deepcopy(state["store"]))
            self._rv = state["rv"]
            self._clock = {o["metadata"]["uid"]: float("-inf") for o in self.store.values()}
            self._rollouts = {uid: {**r, "pods": None, "probed": float("-inf")} for uid, r in state["rollouts"].items()}


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
            while not self._stop.is_set():
                await handler.reconcile()
                try:
                    await asyncio.wait_for(self._stop.wait(), handler.timing.tick_s)
                except asyncio.TimeoutError:
                    pass

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

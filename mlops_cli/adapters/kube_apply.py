"""Talking to a Kubernetes API server: server-side apply, plans, readiness waits, deletes, events, logs.

Objects are plain dicts (what `charts/` renders). Apply is server-side apply with field manager
`mlops`; each applied object carries the sha256 of what we applied in an annotation, so a plan
(create / update / unchanged) needs one GET per object and a second `mlops up` writes nothing.

Only the Kubernetes client's connection layer is used (kubeconfig, auth, TLS): paths are built here
from a kind table (kube_objects.py), learned CRDs and API discovery, so custom resources need no
generated classes.

Example::

    cluster = KubeCluster.connect(kubeconfig="", context="", default_namespace="mlops")
    cluster.apply(deployment)               # -> "create" | "update" | "unchanged"
    cluster.wait_ready(deployment, deadline=time.monotonic() + 300)
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ..common.errors import MlopsError, PreflightError, UnreachableError
from .kube_errors import KubeApiError, KubeTimeout, token_service_account
from .kube_objects import (BUILTIN_KINDS, FIELD_MANAGER, HASH_ANNOTATION, READY_CONDITION, SETTINGS_MANAGER,
                           UNANNOTATED_KINDS, applied_hash, condition, covers, describe, rollout_pending, secret_values)

FIRST_POLL_S = 0.02  # then doubling up to poll_s: quick objects are seen quickly, slow ones cost few requests
# Where the kubelet mounts a pod's ServiceAccount token and CA (kubernetes.io/docs/tasks/run-application/
# access-api-from-pod/#directly-accessing-the-rest-api): the loop's CronJob pod has no kubeconfig.
IN_CLUSTER_CREDENTIALS = Path("/var/run/secrets/kubernetes.io/serviceaccount")
IN_CLUSTER_CONTEXT = "in-cluster"


def _in_a_pod() -> bool:
    """No kubeconfig to load, and the kubelet's service env is set: client-go's rule for falling back to the
    in-cluster config (k8s.io/client-go tools/clientcmd/merged_client_builder.go DeferredLoadingClientConfig: an
    empty merged kubeconfig and a working InClusterConfig), as kubectl in a pod does."""
    if os.environ.get("KUBECONFIG") or (Path.home() / ".kube" / "config").is_file():
        return False
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST") and os.environ.get("KUBERNETES_SERVICE_PORT"))


@dataclass
class KubeCluster:
    api: Any                       # kubernetes.client.ApiClient
    context: str
    default_namespace: str
    poll_s: float = 1.0
    request_timeout_s: float = 30.0
    service_account: str = ""      # in-cluster: the pod's, 'namespace/name' ('?' when its token does not say)

    def __post_init__(self) -> None:
        self._kinds: dict[tuple[str, str], tuple[str, bool]] = dict(BUILTIN_KINDS)

    # --- connecting ------------------------------------------------------------------------------

    @classmethod
    def connect(cls, kubeconfig: str, context: str, default_namespace: str) -> "KubeCluster":
        from kubernetes import config as kconfig
        from kubernetes.config.config_exception import ConfigException

        if not (kubeconfig or context) and _in_a_pod():
            return cls._in_cluster(default_namespace)
        path = kubeconfig or None
        try:
            contexts, active = kconfig.list_kube_config_contexts(config_file=path)
            chosen = context or (active or {}).get("name", "")
            if context and context not in {c["name"] for c in contexts}:
                raise PreflightError(f"kubeconfig context {context!r} not found (have: {', '.join(c['name'] for c in contexts)})",
                                     hint="set [kubernetes].context to one of them, or empty for the current one")
            api = kconfig.new_client_from_config(config_file=path, context=chosen or None)
        except (ConfigException, OSError, TypeError, KeyError) as exc:
            where = kubeconfig or "$KUBECONFIG or ~/.kube/config"
            raise PreflightError(f"cannot load kubeconfig {where}: {exc}",
                                 hint="point [kubernetes].kubeconfig (or KUBECONFIG) at a valid kubeconfig file") from None
        return cls(api=api, context=chosen, default_namespace=default_namespace)

    @classmethod
    def _in_cluster(cls, default_namespace: str) -> "KubeCluster":
        """The pod's ServiceAccount: its token (re-read as the kubelet rotates it) and the cluster's CA."""
        from kubernetes import client
        from kubernetes.config.config_exception import ConfigException
        from kubernetes.config.incluster_config import InClusterConfigLoader

        configuration = client.Configuration()
        try:
            InClusterConfigLoader(token_filename=str(IN_CLUSTER_CREDENTIALS / "token"),
                                  cert_filename=str(IN_CLUSTER_CREDENTIALS / "ca.crt")).load_and_set(configuration)
        except ConfigException as exc:
            raise PreflightError(f"no kubeconfig, and this pod's ServiceAccount credentials cannot be read: {exc}",
                                 hint=f"mount the ServiceAccount token ({IN_CLUSTER_CREDENTIALS}: automountServiceAccountToken), "
                                      "or set [kubernetes].kubeconfig") from None
        account = token_service_account((IN_CLUSTER_CREDENTIALS / "token").read_text()) or "?"
        return cls(api=client.ApiClient(configuration), context=IN_CLUSTER_CONTEXT, default_namespace=default_namespace,
                   service_account=account)

    @property
    def server(self) -> str:
        return self.api.configuration.host

    def request(self, method: str, path: str, *, query: list[tuple[str, str]] | None = None, body: Any = None,
                content_type: str = "application/json", what: str = "", missing_ok: bool = False,
                stream: bool = False) -> Any:
        import urllib3

        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            m, url, hdrs, data, post = self.api.param_serialize(method, path, query_params=query or [], header_params=headers,
                                                               body=body, auth_settings=["BearerToken"])
            resp = self.api.call_api(m, url, hdrs, data, post, _request_timeout=None if stream else self.request_timeout_s)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise UnreachableError(f"cannot reach the Kubernetes API server at {self.server}: {exc.__class__.__name__}",
                                 hint=f"check that the cluster of context {self.context!r} is running and reachable") from None
        if stream and 200 <= resp.status < 300:
            return resp.response
        resp.read()
        if resp.status == 404 and missing_ok:
            return None
        if not 200 <= resp.status < 300:
            try:
                status = json.loads(resp.data or b"{}")
            except ValueError:
                status = {"message": (resp.data or b"")[:200].decode(errors="replace")}
            raise KubeApiError(method, what or path, resp.status, str(status.get("reason", "")), str(status.get("message", "")),
                               service_account=self.service_account)
        if not resp.data:
            return {}
        try:
            return json.loads(resp.data)
        except ValueError:
            return resp.data.decode(errors="replace")

    # --- paths -----------------------------------------------------------------------------------

    def learn(self, obj: dict[str, Any]) -> None:
        """Remember the plural and scope of the kinds a CustomResourceDefinition defines."""
        if obj.get("kind") != "CustomResourceDefinition":
            return
        spec = obj["spec"]
        for version in spec.get("versions", []):
            key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
            self._kinds[key] = (spec["names"]["plural"], spec.get("scope", "Namespaced") == "Namespaced")

    def _kind_info(self, api_version: str, kind: str) -> tuple[str, bool]:
        if (api_version, kind) not in self._kinds:
            base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            found = self.request("GET", base, what=f"API discovery for {api_version}", missing_ok=True) or {}
            for res in found.get("resources", []):
                if "/" not in res.get("name", "") and res.get("kind") == kind:
                    self._kinds[(api_version, kind)] = (res["name"], bool(res.get("namespaced")))
        if (api_version, kind) not in self._kinds:
            raise KubeApiError("find", f"{kind} ({api_version})", 404, "NotFound", "the cluster does not serve this kind")
        return self._kinds[(api_version, kind)]

    def collection_path(self, api_version: str, kind: str, namespace: str | None = None) -> str:
        plural, namespaced = self._kind_info(api_version, kind)
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        if namespaced:
            return f"{base}/namespaces/{namespace or self.default_namespace}/{plural}"
        return f"{base}/{plural}"

    def path(self, obj: dict[str, Any]) -> str:
        meta = obj["metadata"]
        return f"{self.collection_path(obj['apiVersion'], obj['kind'], meta.get('namespace'))}/{meta['name']}"

    def normalise(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A copy with the default namespace filled in for namespaced kinds (as kubectl does)."""
        out = copy.deepcopy(obj)
        _, namespaced = self._kind_info(out["apiVersion"], out["kind"])
        if namespaced:
            out["metadata"].setdefault("namespace", self.default_namespace)
        else:
            out["metadata"].pop("namespace", None)
        return out

    # --- reading ---------------------------------------------------------------------------------

    def get(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return self.request("GET", self.path(obj), what=describe(obj), missing_ok=True)
        except KubeApiError as exc:
            if exc.status == 404:  # the kind itself is not served yet (its CRD is not installed)
                return None
            raise

    def list_objects(self, api_version: str, kind: str, namespace: str | None = None, label_selector: str = "") -> list[dict[str, Any]]:
        query = [("labelSelector", label_selector)] if label_selector else []
        found = self.request("GET", self.collection_path(api_version, kind, namespace), query=query,
                             what=f"{kind} list", missing_ok=True)
        return (found or {}).get("items", [])

    def events(self, obj: dict[str, Any], limit: int = 5) -> list[str]:
        """The last events of an object and of the pods it owns (matched by name prefix)."""
        ns = obj["metadata"].get("namespace")
        if not ns:
            return []
        name = obj["metadata"]["name"]
        try:
            items = self.list_objects("v1", "Event", ns)
        except MlopsError:
            return []
        mine = [e for e in items if (e.get("involvedObject") or {}).get("name", "").startswith(name)]
        mine.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        return [f"{(e.get('involvedObject') or {}).get('kind', '')} {(e.get('involvedObject') or {}).get('name', '')}: "
                f"{e.get('reason', '')}: {e.get('message', '')}" for e in mine[-limit:]]

    # --- writing ---------------------------------------------------------------------------------

    def plan(self, obj: dict[str, Any], live: dict[str, Any] | None = None, *, fetch: bool = True) -> str:
        """create | update | unchanged, comparing what we would apply with what we applied last."""
        obj = self.normalise(obj)
        if fetch:
            live = self.get(obj)
        if live is None:
            return "create"
        if obj["kind"] in UNANNOTATED_KINDS:
            # A webhook may default fields into the live spec: then this says "update" and the apply is a no-op.
            same = live.get("spec") == obj.get("spec") and covers(live.get("metadata"), obj["metadata"])
            return "unchanged" if same else "update"
        recorded = ((live.get("metadata") or {}).get("annotations") or {}).get(HASH_ANNOTATION)
        if recorded != applied_hash(obj):
            return "update"
        if obj["kind"] == "Secret" and obj.get("stringData") and secret_values(live) != obj["stringData"]:
            return "update"
        return "unchanged"

    def apply(self, obj: dict[str, Any], deadline: float | None = None) -> str:
        """Server-side apply unless unchanged; returns the plan's action.

        Until `deadline`, retries what a fresh install hits for a few seconds and then outgrows: a
        kind whose CRD was just Established but is not served yet (404), and an admission webhook
        whose Deployment is Available but whose endpoint is not routable yet (500 "calling webhook").
        """
        obj = self.normalise(obj)
        self.learn(obj)
        while True:
            try:
                action = self.plan(obj)
                if action == "unchanged":
                    return action
                body = copy.deepcopy(obj)
                if obj["kind"] not in UNANNOTATED_KINDS:
                    body["metadata"].setdefault("annotations", {})[HASH_ANNOTATION] = applied_hash(obj)
                self.request("PATCH", self.path(obj), query=[("fieldManager", FIELD_MANAGER), ("force", "true")], body=body,
                             content_type="application/apply-patch+yaml", what=describe(obj))
                return action
            except KubeApiError as exc:
                transient = (exc.status == 404 and (obj["apiVersion"], obj["kind"]) not in BUILTIN_KINDS) or \
                    (exc.status == 500 and "webhook" in exc.message)
                if not transient or deadline is None or time.monotonic() >= deadline:
                    raise
                time.sleep(self.poll_s)

    def apply_settings(self, obj: dict[str, Any]) -> str:
        """Server-side apply of just the fields in `obj` to an object someone else installed, as
        SETTINGS_MANAGER with no annotation of ours: it stays theirs. "update" | "unchanged"."""
        obj = self.normalise(obj)
        if covers(self.get(obj), obj):
            return "unchanged"
        self.request("PATCH", self.path(obj), query=[("fieldManager", SETTINGS_MANAGER), ("force", "true")], body=obj,
                     content_type="application/apply-patch+yaml", what=describe(obj))
        return "update"

    def delete(self, obj: dict[str, Any]) -> bool:
        """True when something was deleted, False when it was already gone."""
        obj = self.normalise(obj)
        try:
            path = self.path(obj)
        except KubeApiError as exc:
            if exc.status == 404:
                return False  # its kind is gone (CRD deleted), and with it the object
            raise
        found = self.request("DELETE", path, body={"propagationPolicy": "Background"}, what=describe(obj), missing_ok=True)
        return found is not None

    def wait_gone(self, objects: list[dict[str, Any]], deadline: float, on_poll: Callable[[str], None] | None = None,
                  timeout_setting: str = "[kubernetes].step_timeout_s") -> None:
        """Poll until every object is gone; on timeout name each one left and the finalizers holding it.

        A deleted object with finalizers stays until its controller removes them, so a controller deleted
        before the objects it finalizes leaves them (and their namespace) stuck for good.
        """
        pending = [self.normalise(o) for o in objects]
        delay = FIRST_POLL_S
        while True:
            left = []
            for obj in pending:
                live = self.get(obj)
                if live is not None:
                    left.append((obj, live))
            if not left:
                return
            if on_poll:
                on_poll(f"{len(left)} left, e.g. {describe(left[0][0])}")
            if time.monotonic() >= deadline:
                lines = []
                for obj, live in left:
                    meta = live.get("metadata") or {}
                    held = ", ".join(meta.get("finalizers") or []) or "no finalizers: still terminating"
                    extra = [c.get("message", "") for c in (live.get("status") or {}).get("conditions") or []
                             if c.get("type", "").startswith("Namespace") and c.get("status") == "True"]
                    lines.append(f"{describe(obj)} (finalizers: {held}){': ' + '; '.join(extra) if extra else ''}")
                raise KubeTimeout(
                    "timed out waiting for deletion of:\n    " + "\n    ".join(lines),
                    hint="a finalizer is removed by its controller: if that controller is running, wait and re-run "
                         f"(raise {timeout_setting} if it is only slow); if it was deleted, remove the finalizer by hand: "
                         "kubectl patch KIND NAME -n NS --type=merge -p '{\"metadata\":{\"finalizers\":null}}'",
                )
            pending = [obj for obj, _ in left]
            time.sleep(min(delay, max(deadline - time.monotonic(), 0.01)))
            delay = min(delay * 2, self.poll_s)

    # --- waiting ---------------------------------------------------------------------------------

    def wait_ready(self, obj: dict[str, Any], deadline: float, on_poll: Callable[[str], None] | None = None,
                   timeout_setting: str = "[kubernetes].step_timeout_s") -> dict[str, Any]:
        """Poll until the kind's ready condition is True; on timeout name the object and its events."""
        obj = self.normalise(obj)
        wanted = READY_CONDITION[obj["kind"]]
        last = "not created yet"
        delay = FIRST_POLL_S
        while True:
            live = self.get(obj)
            cond = condition(live, wanted)
            observed = ((live or {}).get("status") or {}).get("observedGeneration")
            generation = ((live or {}).get("metadata") or {}).get("generation")
            stale = observed is not None and generation is not None and observed < generation
            rolling = rollout_pending(live) if obj["kind"] == "Deployment" and not stale else None
            if cond is not None and cond.get("status") == "True" and not stale and not rolling:
                return live or {}
            if stale:
                last = f"the controller has not seen generation {generation} yet"
            elif rolling and cond is not None and cond.get("status") == "True":
                last = rolling
            elif cond is not None:
                last = f"{wanted}={cond.get('status')} {cond.get('reason', '')} {cond.get('message', '')}".strip()
            elif live is not None:
                last = f"no {wanted} condition yet"
            if on_poll:
                on_poll(last)
            if time.monotonic() >= deadline:
                events = self.events(obj)
                shown = "\n    ".join(events) if events else "(no events)"
                raise KubeTimeout(
                    f"timed out waiting for {describe(obj)} to be {wanted}: {last}\n  last events:\n    {shown}",
                    hint=f"look at the events above (`kubectl describe` shows more); raise {timeout_setting} "
                         "if it is only slow, then re-run: finished objects are reported unchanged",
                )
            time.sleep(min(delay, max(deadline - time.monotonic(), 0.01)))
            delay = min(delay * 2, self.poll_s)

    # --- logs ------------------------------------------------------------------------------------

    def pod_logs(self, namespace: str, label_selector: str, *, lines: int, follow: bool) -> Iterator[str]:
        pods = self.list_objects("v1", "Pod", namespace, label_selector)
        if not pods:
            raise MlopsError(f"no pods match {label_selector} in namespace {namespace}",
                             hint="is the component installed and running? see `mlops status --target kubernetes`")
        pod = sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""))[-1]["metadata"]["name"]
        query = [("tailLines", str(lines))] + ([("follow", "true")] if follow else [])
        path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
        if not follow:
            text = self.request("GET", path, query=query, what=f"logs of pod {namespace}/{pod}")
            yield from (line + "\n" for line in str(text).splitlines())
            return
        raw = self.request("GET", path, query=query, what=f"logs of pod {namespace}/{pod}", stream=True)
        for chunk in raw.stream(4096, decode_content=True):
            yield chunk.decode(errors="replace")

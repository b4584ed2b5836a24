"""The built-in controllers of the emulated cluster: what a bare Kubernetes does after an object is written.

Each runs on every tick of the emulator's loop (never inside a request), so a client sees the same
lag as on a cluster: an applied Deployment is not Available yet, a deleted object with finalizers
lingers. Delays come from `Timing` (short in tests, same order of events as a cluster).

- apiextensions: a CRD is Established after `crd_established_s`; deleting it deletes its custom
  resources first (finalizer customresourcecleanup.apiextensions.k8s.io) and it lingers while any remain.
- namespace controller: a deleted Namespace is Terminating (finalizer `kubernetes`) until every object
  in it is gone; objects whose finalizers are never removed keep it Terminating
  (condition NamespaceFinalizersRemaining), and the NamespaceLifecycle admission plugin refuses new
  objects in it with 403 "unable to create new content in namespace X because it is being terminated".
- garbage collector: dependents (ownerReferences) of a deleted owner are deleted (background).
- PV controller: a PVC binds when its StorageClass exists; without storageClassName it needs a default
  StorageClass (annotation storageclass.kubernetes.io/is-default-class), else it stays Pending with
  FailedBinding "no persistent volumes available for this claim and no storage class is set". EKS
  clusters created at 1.30 or later keep gp2 without the default annotation (communities.sas.com/t5/SAS-Communities-Library/Amazon-EKS-1-30-no-longer-assigns-a-default-storage-class/ta-p/953301).
- scheduler + kubelet + deployment controller: a pod with an unbound PVC is unschedulable, a missing
  Secret in a secretKeyRef is CreateContainerConfigError; a started pod is ready when its readiness
  probes pass (tests/k8s_probes.py); a Deployment is Available while enough pods are ready (old ones
  during a RollingUpdate, none during a Recreate), and reports updated/available replicas as
  `kubectl rollout status` reads them.

The operators a platform installs (KServe, Knative Serving) add theirs in tests/k8s_serving_controllers.py.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from tests.k8s_probes import ClusterNetwork, GatewayPod, is_gateway, probe_ok

Key = tuple[str, str, str, str]  # (apiVersion, plural, namespace, name)

CRD_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


@dataclass
class Timing:
    """Seconds; a cluster takes seconds to minutes for each, tests take a few ticks."""
    tick_s: float = 0.025   # each tick scans the store; under load, finer ticks only cost CPU
    crd_established_s: float = 0.01
    pod_start_s: float = 0.02
    revision_ready_s: float = 0.04
    finalize_s: float = 0.02
    probe_period_s: float = 0.3   # real probes against the real gateway app: each one is an HTTP request


def condition_status(obj: dict[str, Any] | None, kind: str) -> str | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return c.get("status")
    return None


def content_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:10]


class ClusterControllers:
    """Mixed into the ApiServer: `self.store`, `self.timing`, `self._delete`, `self._put` come from there. The
    hooks `_operators` and `_ksvc_ready` are for the operators a platform installs (ServingControllers)."""

    # --- helpers ---------------------------------------------------------------------------------

    def _since(self, uid: str, now: float) -> float:
        return now - self._clock.setdefault(uid, now)

    def _running(self, namespace: str, name: str) -> bool:
        dep = self.store.get(("apps/v1", "deployments", namespace, name))
        return dep is not None and not dep["metadata"].get("deletionTimestamp") and condition_status(dep, "Available") == "True"

    def _event(self, namespace: str, kind: str, name: str, reason: str, message: str, type_: str = "Warning") -> None:
        if namespace not in {k[3] for k in self.store if k[1] == "namespaces"}:
            return
        ev_name = f"{name}.{content_hash([kind, reason, message])}"
        key = ("v1", "events", namespace, ev_name)
        old = self.store.get(key)
        self._ts += 1
        self.store[key] = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": ev_name, "namespace": namespace},
                           "involvedObject": {"kind": kind, "name": name, "namespace": namespace}, "type": type_,
                           "reason": reason, "message": message, "count": (old or {}).get("count", 0) + 1,
                           "lastTimestamp": f"2026-11-27T00:{self._ts // 60 % 60:02d}:{self._ts % 60:02d}Z"}

    def _finish(self, key: Key, finalizer: str, now: float) -> None:
        """A controller removes its finalizer from a deleted object, a moment after the delete."""
        obj = self.store.get(key)
        if obj is None or finalizer not in (obj["metadata"].get("finalizers") or []):
            return
        if self._since("del-" + obj["metadata"]["uid"], now) < self.timing.finalize_s:
            return
        obj["metadata"]["finalizers"] = [f for f in obj["metadata"]["finalizers"] if f != finalizer]
        self._bump(obj)
        if not obj["metadata"]["finalizers"]:
            self.store.pop(key)

    # --- one tick --------------------------------------------------------------------------------

    async def reconcile(self) -> None:
        now = time.monotonic()
        with self.lock:
            self._crds(now)
            self._garbage_collect()
            self._namespaces()
            self._volumes()
            self._operators(now)
            deployments = [(k, o) for k, o in self.store.items() if k[:2] == ("apps/v1", "deployments")]
        for key, dep in deployments:
            await self._deployment(key, dep, now)

    def _operators(self, now: float) -> None:
        """The controllers of installed operators, in the same tick and under the same lock: none in a bare cluster."""

    def _ksvc_ready(self, name: str, namespace: str) -> bool | None:
        """Whether Knative Service `name` is Ready, as the gateway pod's network sees it; None: there is none."""
        return None

    # --- apiextensions, namespaces, garbage collection -------------------------------------------

    def _crds(self, now: float) -> None:
        for key, crd in list(self.store.items()):
            if crd.get("kind") != "CustomResourceDefinition":
                continue
            meta = crd["metadata"]
            if meta.get("deletionTimestamp"):
                spec = crd["spec"]
                left = [k for k in self.store if k[1] == spec["names"]["plural"] and k[0].startswith(spec["group"] + "/")]
                for k in left:
                    self._delete(k)
                if not left:
                    self.store.pop(key)
                continue
            if condition_status(crd, "Established") != "True" and self._since(meta["uid"], now) >= self.timing.crd_established_s:
                crd["status"] = {"conditions": [{"type": "Established", "status": "True", "reason": "InitialNamesAccepted"}],
                                 "acceptedNames": crd["spec"]["names"]}
                self._bump(crd)

    def _namespaces(self) -> None:
        for key, ns in list(self.store.items()):
            if key[1] != "namespaces" or not ns["metadata"].get("deletionTimestamp"):
                continue
            name = key[3]
            inside = [k for k in self.store if k[2] == name]
            for k in inside:
                self._delete(k)
            left = [self.store[k] for k in inside if k in self.store]
            if not left:
                self.store.pop(key)
                continue
            finalizers = sorted({f for o in left for f in o["metadata"].get("finalizers") or []})
            conditions = [{"type": "NamespaceFinalizersRemaining", "status": "True", "reason": "SomeFinalizersRemain",
                           "message": f"Some content in the namespace has finalizers remaining: {', '.join(finalizers)} "
                                      f"in {len(left)} resource instances"}] if finalizers else []
            ns["status"] = {"phase": "Terminating", "conditions": conditions}

    def _garbage_collect(self) -> None:
        uids = {o["metadata"].get("uid") for o in self.store.values()}
        for key, obj in list(self.store.items()):
            owners = obj["metadata"].get("ownerReferences") or []
            if owners and not any(o.get("uid") in uids for o in owners):
                self._delete(key)

    # --- storage and pods ------------------------------------------------------------------------

    def _volumes(self) -> None:
        classes = {k[3]: o for k, o in self.store.items() if k[:2] == ("storage.k8s.io/v1", "storageclasses")}
        default = next((n for n, o in classes.items()
                        if (o["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"), None)
        for key, pvc in list(self.store.items()):
            if key[:2] != ("v1", "persistentvolumeclaims") or (pvc.get("status") or {}).get("phase") == "Bound":
                continue
            wanted = pvc["spec"].get("storageClassName") or default
            if wanted in classes:
                pvc["spec"]["storageClassName"] = wanted
                pvc["spec"]["volumeName"] = f"pvc-{pvc['metadata']['uid']}"
                pvc["status"] = {"phase": "Bound", "accessModes": pvc["spec"].get("accessModes", [])}
                self._bump(pvc)
                continue
            pvc["status"] = {"phase": "Pending"}
            message = ("no persistent volumes available for this claim and no storage class is set" if not wanted
                       else f'storageclass.storage.k8s.io "{wanted}" not found')
            self._event(key[2], "PersistentVolumeClaim", key[3], "FailedBinding" if not wanted else "ProvisioningFailed", message)

    def _blocked(self, namespace: str, pod_spec: dict[str, Any]) -> tuple[str, str] | None:
        """Why a pod of this spec cannot start: (event reason, message), or None."""
        for vol in pod_spec.get("volumes") or []:
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            if claim is None:
                continue
            pvc = self.store.get(("v1", "persistentvolumeclaims", namespace, claim))
            if pvc is None:
                return "FailedScheduling", f'0/1 nodes are available: persistentvolumeclaim "{claim}" not found.'
            if (pvc.get("status") or {}).get("phase") != "Bound":
                return "FailedScheduling", "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."
        for c in pod_spec.get("containers") or []:
            for env in c.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if not ref or ref.get("optional"):
                    continue
                secret = self.store.get(("v1", "secrets", namespace, ref["name"]))
                if secret is None:
                    return "Failed", f'Error: secret "{ref["name"]}" not found'
                if ref["key"] not in (secret.get("data") or {}):
                    return "Failed", f"Error: couldn't find key {ref['key']} in Secret {namespace}/{ref['name']}"
        return None

    async def _deployment(self, key: Key, dep: dict[str, Any], now: float) -> None:
        spec, meta = dep["spec"], dep["metadata"]
        template = spec.get("template") or {}
        rollout = self._rollouts.setdefault(meta["uid"], {})
        if rollout.get("generation") != meta.get("generation"):  # the template is part of spec: a new generation
            rollout["generation"] = meta.get("generation")
            t_hash = content_hash(template)
            if rollout.get("hash") != t_hash:
                serving = rollout.get("ready", False) or rollout.get("old_ready", False)
                rollout.update(hash=t_hash, since=now, ready=False, old_ready=serving, pods=None, probed=0.0)
        t_hash = rollout["hash"]
        if rollout["ready"] and now - rollout["probed"] < self.timing.probe_period_s and meta["name"] not in self.stuck:
            return  # kubelet probes every periodSeconds, not continuously
        rollout["probed"] = now
        pod = f"{meta['name']}-{t_hash}-emu"
        replicas = spec.get("replicas", 1)
        blocked = self._blocked(key[2], template.get("spec") or {})
        if meta["name"] in self.stuck:
            blocked = ("FailedScheduling", "0/1 nodes are available: insufficient memory.")
        ready, why = False, None
        if blocked:
            why = blocked
        elif now - rollout["since"] >= self.timing.pod_start_s:
            ready, why = await self._probe(key[2], pod, template.get("spec") or {}, rollout)
        rollout["ready"] = ready
        if why:
            with self.lock:
                self._event(key[2], "Pod", pod, *why)
        old_serving = rollout["old_ready"] and (spec.get("strategy") or {}).get("type") != "Recreate"
        available = replicas if ready or old_serving else 0
        status = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": replicas * (2 if old_serving and not ready else 1),
            "updatedReplicas": replicas,
            "readyReplicas": available, "availableReplicas": available,
            "conditions": [
                {"type": "Available", "status": "True" if available else "False",
                 "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                 "message": "Deployment has minimum availability." if available else "Deployment does not have minimum availability."},
                {"type": "Progressing", "status": "True",
                 "reason": "NewReplicaSetAvailable" if ready else "ReplicaSetUpdated"},
            ],
        }
        if ready:
            rollout["old_ready"] = False
        with self.lock:
            live = self.store.get(key)
            if live is not None and live["metadata"]["uid"] == meta["uid"] and live.get("status") != status:
                live["status"] = status
                self._bump(live)

    async def _probe(self, namespace: str, pod: str, pod_spec: dict[str, Any], rollout: dict[str, Any]) -> tuple[bool, tuple[str, str] | None]:
        for i, c in enumerate(pod_spec.get("containers") or []):
            get = (c.get("readinessProbe") or {}).get("httpGet")
            if not get or not is_gateway(c):
                continue
            pods = rollout.setdefault("pods", None) or {}
            try:
                if i not in pods:
                    pods[i] = GatewayPod(c, ClusterNetwork(lambda n, ns: self._ksvc_ready(n, ns)))
                    rollout["pods"] = pods
                status = await pods[i].get(get["path"])
            except Exception as exc:  # the real container would crash the same way: CrashLoopBackOff
                return False, ("BackOff", f"Back-off restarting failed container {c['name']}: {type(exc).__name__}: {exc}")
            if not probe_ok(status):
                return False, ("Unhealthy", f"Readiness probe failed: HTTP probe failed with statuscode: {status}")
        return True, None

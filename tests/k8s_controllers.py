"""The controllers of the emulated cluster: what a real cluster does after an object is written.

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
- KServe (kserve/kserve v0.20.0): only while Deployment kserve/kserve-controller-manager is Available.
  Adds finalizer `inferenceservice.finalizers` and removes it on delete
  (pkg/controller/v1beta1/inferenceservice/controller.go); renders the predictor's Knative Service
  `<name>-predictor` with every InferenceService annotation copied onto the revision template
  (components/predictor.go, minus constants.ServiceAnnotationDisallowedList) and traffic from
  canaryTrafficPercent and latestRolledoutRevision (reconcilers/knative/ksvc_reconciler.go
  createKnativeService); propagates the Knative status back (inference_service_status.go PropagateStatus,
  including status.observedGeneration = the Knative Service's observedGeneration). A Knative refusal is
  a Warning event InternalError on the InferenceService (controller.go), which then never gets Ready.
- Knative Serving (knative/serving knative-v1.21.1): only while Deployment knative-serving/controller is
  Available. Admission of the revision template from config-features (tests/k8s_knative_admission.py);
  a new Revision `<ksvc>-0000N` for each template change; `latestRevision: true` traffic goes to the
  latest *ready* revision; a Route with finalizer routes.serving.knative.dev (the labeler,
  pkg/reconciler/labeler, implements FinalizeKind on the generated route reconciler, whose
  defaultFinalizerName that is: pkg/client/injection/reconciler/serving/v1/route/controller.go).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from tests.k8s_knative_admission import denial, features, refused_fields
from tests.k8s_probes import ClusterNetwork, GatewayPod, is_gateway, probe_ok

Key = tuple[str, str, str, str]  # (apiVersion, plural, namespace, name)

KSVC, ROUTE, REVISION = ("serving.knative.dev/v1", "services"), ("serving.knative.dev/v1", "routes"), ("serving.knative.dev/v1", "revisions")
ISVC = ("serving.kserve.io/v1beta1", "inferenceservices")
ISVC_FINALIZER = "inferenceservice.finalizers"
ROUTE_FINALIZER = "routes.serving.knative.dev"
CRD_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
KSERVE_CONTROLLER = ("kserve", "kserve-controller-manager")
KNATIVE_CONTROLLER = ("knative-serving", "controller")
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
# kserve pkg/constants/constants.go ServiceAnnotationDisallowedList (knative autoscaling keys, kubectl's own)
ISVC_ANNOTATIONS_NOT_COPIED = {"autoscaling.knative.dev/min-scale", "autoscaling.knative.dev/max-scale",
                               "internal.serving.kserve.io/storage-initializer-sourceuri",
                               "kubectl.kubernetes.io/last-applied-configuration", "serving.kserve.io/model-format"}
# PredictorSpec keys that are not PodSpec fields (v1beta1/predictor.go, component.go ComponentExtensionSpec)
NOT_POD_FIELDS = {"minReplicas", "maxReplicas", "scaleTarget", "scaleMetric", "scaleMetricType", "autoScaling",
                  "containerConcurrency", "timeout", "canaryTrafficPercent", "logger", "batcher", "labels", "annotations",
                  "deploymentStrategy", "metrics", "behavior", "model", "sklearn", "xgboost", "tensorflow", "pytorch",
                  "triton", "onnx", "huggingface", "pmml", "lightgbm", "paddle", "storageUris", "storageContainerName",
                  "workerSpec", "name"}


@dataclass
class Timing:
    """Seconds; a cluster takes seconds to minutes for each, tests take a few ticks."""
    tick_s: float = 0.025   # each tick scans the store; under load, finer ticks only cost CPU
    crd_established_s: float = 0.01
    pod_start_s: float = 0.02
    revision_ready_s: float = 0.04
    finalize_s: float = 0.02
    probe_period_s: float = 0.3   # real probes against the real gateway app: each one is an HTTP request


def _cond(obj: dict[str, Any] | None, kind: str) -> str | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return c.get("status")
    return None


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:10]


class Controllers:
    """Mixed into the ApiServer: `self.store`, `self.timing`, `self._delete`, `self._put` come from there."""

    # --- helpers ---------------------------------------------------------------------------------

    def _since(self, uid: str, now: float) -> float:
        return now - self._clock.setdefault(uid, now)

    def _running(self, namespace: str, name: str) -> bool:
        dep = self.store.get(("apps/v1", "deployments", namespace, name))
        return dep is not None and not dep["metadata"].get("deletionTimestamp") and _cond(dep, "Available") == "True"

    def _event(self, namespace: str, kind: str, name: str, reason: str, message: str, type_: str = "Warning") -> None:
        if namespace not in {k[3] for k in self.store if k[1] == "namespaces"}:
            return
        ev_name = f"{name}.{_hash([kind, reason, message])}"
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
            self._knative(now)
            self._kserve(now)
            deployments = [(k, o) for k, o in self.store.items() if k[:2] == ("apps/v1", "deployments")]
        for key, dep in deployments:
            await self._deployment(key, dep, now)

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
            if _cond(crd, "Established") != "True" and self._since(meta["uid"], now) >= self.timing.crd_established_s:
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
            t_hash = _hash(template)
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

    def _ksvc_ready(self, name: str, namespace: str) -> bool | None:
        with self.lock:
            ksvc = self.store.get((*KSVC, namespace, name))
            return None if ksvc is None else _cond(ksvc, "Ready") == "True"

    # --- Knative Serving -------------------------------------------------------------------------

    def _knative(self, now: float) -> None:
        alive = self._running(*KNATIVE_CONTROLLER)
        for key, route in list(self.store.items()):
            if key[:2] == ROUTE and route["metadata"].get("deletionTimestamp") and alive:
                self._finish(key, ROUTE_FINALIZER, now)
        if not alive:
            return
        for key, ksvc in list(self.store.items()):
            if key[:2] != KSVC or ksvc["metadata"].get("deletionTimestamp"):
                continue
            self._knative_service(key, ksvc, now)

    def _knative_service(self, key: Key, ksvc: dict[str, Any], now: float) -> None:
        ns, name = key[2], key[3]
        owner = [{"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": name, "uid": ksvc["metadata"]["uid"], "controller": True}]
        if (*ROUTE, ns, name) not in self.store:
            self._put((*ROUTE, ns, name), {"apiVersion": "serving.knative.dev/v1", "kind": "Route",
                                          "metadata": {"name": name, "namespace": ns, "finalizers": [ROUTE_FINALIZER],
                                                       "ownerReferences": owner}, "spec": {}})
        revisions = sorted((o for k, o in self.store.items() if k[:2] == REVISION and k[2] == ns
                            and (o["metadata"].get("labels") or {}).get("serving.knative.dev/service") == name),
                           key=lambda o: o["metadata"]["name"])
        template = ksvc["spec"]["template"]
        if not revisions or revisions[-1]["metadata"]["annotations"].get("emu/template") != _hash(template):
            rev_name = f"{name}-{len(revisions) + 1:05d}"
            meta = template.get("metadata") or {}
            revision = {"apiVersion": "serving.knative.dev/v1", "kind": "Revision",
                        "metadata": {"name": rev_name, "namespace": ns, "ownerReferences": owner,
                                     "labels": {**(meta.get("labels") or {}), "serving.knative.dev/service": name,
                                                "serving.knative.dev/configuration": name},
                                     "annotations": {**(meta.get("annotations") or {}), "emu/template": _hash(template)}},
                        "spec": template.get("spec") or {}}
            self._put((*REVISION, ns, rev_name), revision)
            revisions.append(self.store[(*REVISION, ns, rev_name)])
        for rev in revisions:
            if _cond(rev, "Ready") is not None:
                continue
            if self._since(rev["metadata"]["uid"], now) >= self.timing.revision_ready_s:
                rev["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
                self._bump(rev)
        latest = revisions[-1]["metadata"]["name"]
        ready_revs = [r["metadata"]["name"] for r in revisions if _cond(r, "Ready") == "True"]
        latest_ready = ready_revs[-1] if ready_revs else ""
        traffic, routed = [], True
        for target in ksvc["spec"].get("traffic") or [{"latestRevision": True, "percent": 100}]:
            rev = latest_ready if target.get("latestRevision", False) else target.get("revisionName", "")
            if not rev or rev not in ready_revs:
                routed = False
                continue
            entry = {"revisionName": rev, "latestRevision": bool(target.get("latestRevision", False)), "percent": target.get("percent", 0)}
            if target.get("tag"):
                entry["tag"] = target["tag"]
            traffic.append(entry)
        config_ready = "True" if latest in ready_revs else "Unknown"  # a revision that fails: tests/test_real_flow.py
        status = {"observedGeneration": ksvc["metadata"]["generation"], "latestCreatedRevisionName": latest,
                  "latestReadyRevisionName": latest_ready, "traffic": traffic if routed else [],
                  "url": f"http://{name}.{ns}.svc.cluster.local",
                  "address": {"url": f"http://{name}.{ns}.svc.cluster.local"},
                  "conditions": [{"type": "ConfigurationsReady", "status": config_ready},
                                 {"type": "RoutesReady", "status": "True" if routed else "Unknown"},
                                 {"type": "Ready", "status": "True" if config_ready == "True" and routed else "Unknown"}]}
        if ksvc.get("status") != status:
            ksvc["status"] = status
            self._bump(ksvc)

    # --- KServe ----------------------------------------------------------------------------------

    def _kserve(self, now: float) -> None:
        if not self._running(*KSERVE_CONTROLLER):
            return
        for key, isvc in list(self.store.items()):
            if key[:2] != ISVC:
                continue
            meta = isvc["metadata"]
            if meta.get("deletionTimestamp"):
                self._finish(key, ISVC_FINALIZER, now)
                continue
            if ISVC_FINALIZER not in (meta.get("finalizers") or []):
                meta["finalizers"] = [*(meta.get("finalizers") or []), ISVC_FINALIZER]
                self._bump(isvc)
            self._inference_service(key, isvc)

    def _inference_service(self, key: Key, isvc: dict[str, Any]) -> None:
        ns, name = key[2], key[3]
        predictor = isvc["spec"]["predictor"]
        status = isvc.setdefault("status", {})
        component = (status.get("components") or {}).get("predictor") or {}
        annotations = {k: v for k, v in (isvc["metadata"].get("annotations") or {}).items() if k not in ISVC_ANNOTATIONS_NOT_COPIED}
        annotations.update(predictor.get("annotations") or {})
        labels = {**(isvc["metadata"].get("labels") or {}), **(predictor.get("labels") or {}),
                  "serving.kserve.io/inferenceservice": name, "component": "predictor"}
        pod_spec = {k: v for k, v in predictor.items() if k not in NOT_POD_FIELDS}
        canary, rolled = predictor.get("canaryTrafficPercent"), component.get("latestRolledoutRevision", "")
        if canary is not None and rolled:
            traffic = [{"latestRevision": True, "percent": canary}]
            if canary < 100:
                traffic.append({"revisionName": rolled, "latestRevision": False, "percent": 100 - canary, "tag": "prev"})
        else:
            traffic = [{"latestRevision": True, "percent": 100}]
        desired = {"template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod_spec}, "traffic": traffic}
        ksvc_name = f"{name}-predictor"
        refused = refused_fields(pod_spec, features(self.store.get(("v1", "configmaps", "knative-serving", "config-features"))))
        if not self._running(*KNATIVE_CONTROLLER):
            refused_message = ('Internal error occurred: failed calling webhook "validation.webhook.serving.knative.dev": '
                               'no endpoints available for service "webhook"')
        else:
            refused_message = denial(refused) if refused else ""
        ksvc_key = (*KSVC, ns, ksvc_name)
        if refused_message:
            self._event(ns, "InferenceService", name, "InternalError", f"fails to reconcile component: {refused_message}")
        else:
            ksvc = self.store.get(ksvc_key)
            if ksvc is None or ksvc["spec"] != desired:
                self._put(ksvc_key, {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                                     "metadata": {"name": ksvc_name, "namespace": ns, "labels": labels,
                                                  "ownerReferences": [{"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                                                                       "name": name, "uid": isvc["metadata"]["uid"], "controller": True}]},
                                     "spec": desired})
        ksvc_status = (self.store.get(ksvc_key) or {}).get("status")
        if not ksvc_status:
            return
        new = _propagate(component, ksvc_status)
        ready = next((c for c in ksvc_status["conditions"] if c["type"] == "Ready"), {})
        # ingress_reconciler.go getHostPrefix: the predictor's own Knative Service only with
        # disableIstioVirtualHost; else `<name>.<ns>`, an ExternalName to Istio's local gateway.
        ingress = (self.store.get(("v1", "configmaps", "kserve", "inferenceservice-config")) or {}).get("data", {}).get("ingress", "{}")
        host = ksvc_name if json.loads(ingress).get("disableIstioVirtualHost") else name
        updated = {
            **status,
            "observedGeneration": ksvc_status["observedGeneration"],  # KServe's quirk: the Knative Service's generation
            # cluster-local visibility: Knative publishes no public route, so the URL is the cluster address
            "url": f"http://{host}.{ns}.{'svc.cluster.local' if labels.get('networking.knative.dev/visibility') == 'cluster-local' else 'example.com'}",
            "address": {"url": f"http://{host}.{ns}.svc.cluster.local"},
            "components": {"predictor": new},
            "conditions": [{**ready, "type": "PredictorReady"}, {**ready, "type": "Ready"}],
        }
        if updated != status:
            isvc["status"] = updated
            self._bump(isvc)


def _propagate(old: dict[str, Any], ks: dict[str, Any]) -> dict[str, Any]:
    """kserve v0.20.0 pkg/apis/serving/v1beta1/inference_service_status.go PropagateStatus, line by line."""
    spec = dict(old)
    spec["latestCreatedRevision"] = ks.get("latestCreatedRevisionName", "")
    per_revision: dict[str, int] = {}
    for t in ks.get("traffic") or []:
        per_revision[t["revisionName"]] = per_revision.get(t["revisionName"], 0) + t.get("percent", 0)
    latest_ready = ks.get("latestReadyRevisionName", "")
    for t in ks.get("traffic") or []:
        if t["revisionName"] == latest_ready and t.get("latestRevision"):
            if spec.get("latestRolledoutRevision", "") != latest_ready:
                if t.get("percent") == 100:  # track the last revision that's fully rolled out
                    spec["previousRolledoutRevision"] = spec.get("latestRolledoutRevision", "")
                    spec["latestRolledoutRevision"] = latest_ready
            elif latest_ready == ks.get("latestCreatedRevisionName") and t.get("percent", 0) < 100:
                # rolled out with 100% and then rolled back: back to the previous rolled-out revision
                if per_revision.get(t["revisionName"]) == 100 and spec.get("previousRolledoutRevision"):
                    spec["latestRolledoutRevision"] = spec["previousRolledoutRevision"]
    spec["latestReadyRevision"] = latest_ready
    if any(c["type"] == "Ready" and c["status"] == "True" for c in ks.get("conditions") or []):
        spec["url"] = ks.get("url")
        spec["address"] = ks.get("address")
    spec["traffic"] = ks.get("traffic") or []
    return {k: v for k, v in spec.items() if v not in ("", None)}

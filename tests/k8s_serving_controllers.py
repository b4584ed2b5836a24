"""The controllers of the operators the platform installs in the emulated cluster, on top of the built-in ones
(tests/k8s_cluster_controllers.py), in the same tick: KServe and Knative Serving.

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

import json
from typing import Any

from tests.k8s_cluster_controllers import ClusterControllers, Key, condition_status, content_hash
from tests.k8s_knative_admission import denial, features, refused_fields

KSVC, ROUTE, REVISION = ("serving.knative.dev/v1", "services"), ("serving.knative.dev/v1", "routes"), ("serving.knative.dev/v1", "revisions")
ISVC = ("serving.kserve.io/v1beta1", "inferenceservices")
ISVC_FINALIZER = "inferenceservice.finalizers"
ROUTE_FINALIZER = "routes.serving.knative.dev"
KSERVE_CONTROLLER = ("kserve", "kserve-controller-manager")
KNATIVE_CONTROLLER = ("knative-serving", "controller")
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


class ServingControllers(ClusterControllers):
    """The built-in controllers, and KServe's and Knative Serving's while their Deployments are Available."""

    def _operators(self, now: float) -> None:
        self._knative(now)
        self._kserve(now)

    def _ksvc_ready(self, name: str, namespace: str) -> bool | None:
        with self.lock:
            ksvc = self.store.get((*KSVC, namespace, name))
            return None if ksvc is None else condition_status(ksvc, "Ready") == "True"

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
        if not revisions or revisions[-1]["metadata"]["annotations"].get("emu/template") != content_hash(template):
            rev_name = f"{name}-{len(revisions) + 1:05d}"
            meta = template.get("metadata") or {}
            revision = {"apiVersion": "serving.knative.dev/v1", "kind": "Revision",
                        "metadata": {"name": rev_name, "namespace": ns, "ownerReferences": owner,
                                     "labels": {**(meta.get("labels") or {}), "serving.knative.dev/service": name,
                                                "serving.knative.dev/configuration": name},
                                     "annotations": {**(meta.get("annotations") or {}), "emu/template": content_hash(template)}},
                        "spec": template.get("spec") or {}}
            self._put((*REVISION, ns, rev_name), revision)
            revisions.append(self.store[(*REVISION, ns, rev_name)])
        for rev in revisions:
            if condition_status(rev, "Ready") is not None:
                continue
            if self._since(rev["metadata"]["uid"], now) >= self.timing.revision_ready_s:
                rev["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
                self._bump(rev)
        latest = revisions[-1]["metadata"]["name"]
        ready_revs = [r["metadata"]["name"] for r in revisions if condition_status(r, "Ready") == "True"]
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

"""Kubernetes objects as plain dicts (what `charts/` renders): where each kind lives in the API, the field
manager and hash annotation our applies carry, what "ready" means per kind, and small readers of live
objects. No connection here; kube_apply.py talks to the API server with these.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from typing import Any

FIELD_MANAGER = "mlops"
HASH_ANNOTATION = "mlops.dev/applied-hash"
# The field manager of the settings we make in someone else's object (a reused install's ConfigMaps): not
# FIELD_MANAGER, so the object never counts as ours and `down` leaves it (targets/kubernetes_ownership.py).
SETTINGS_MANAGER = "mlops-settings"

# apiVersion/kind -> (plural, namespaced) for the kinds we and the upstream manifests use.
BUILTIN_KINDS: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "Service"): ("services", True),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "PersistentVolumeClaim"): ("persistentvolumeclaims", True),
    ("v1", "Pod"): ("pods", True),
    ("v1", "Event"): ("events", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("apps/v1", "DaemonSet"): ("daemonsets", True),
    ("apps/v1", "StatefulSet"): ("statefulsets", True),
    ("batch/v1", "Job"): ("jobs", True),
    ("batch/v1", "CronJob"): ("cronjobs", True),
    ("rbac.authorization.k8s.io/v1", "Role"): ("roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("rolebindings", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ("clusterrolebindings", False),
    ("networking.k8s.io/v1", "Ingress"): ("ingresses", True),
    ("networking.k8s.io/v1", "IngressClass"): ("ingressclasses", False),
    ("networking.k8s.io/v1", "NetworkPolicy"): ("networkpolicies", True),
    ("autoscaling/v2", "HorizontalPodAutoscaler"): ("horizontalpodautoscalers", True),
    ("policy/v1", "PodDisruptionBudget"): ("poddisruptionbudgets", True),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): ("customresourcedefinitions", False),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"): ("validatingwebhookconfigurations", False),
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"): ("mutatingwebhookconfigurations", False),
    # Envoy Gateway's install.yaml (Gateway API's safe-upgrades policy), GA since Kubernetes 1.30
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy"): ("validatingadmissionpolicies", False),
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding"): ("validatingadmissionpolicybindings", False),
    ("apiregistration.k8s.io/v1", "APIService"): ("apiservices", False),
    ("scheduling.k8s.io/v1", "PriorityClass"): ("priorityclasses", False),
    ("storage.k8s.io/v1", "StorageClass"): ("storageclasses", False),
    ("coordination.k8s.io/v1", "Lease"): ("leases", True),
    ("serving.kserve.io/v1beta1", "InferenceService"): ("inferenceservices", True),
    ("serving.knative.dev/v1", "Service"): ("services", True),
    ("serving.knative.dev/v1", "Revision"): ("revisions", True),
    ("serving.knative.dev/v1", "Route"): ("routes", True),
}

# Kinds whose metadata is copied into what their controller creates, so an annotation of ours would
# change it: KServe copies every InferenceService annotation onto the Knative revision template
# (kserve v0.20.0 pkg/controller/v1beta1/inferenceservice/components/predictor.go), and Knative makes
# a new Revision, with new pods, for any template change. These are compared field by field instead.
UNANNOTATED_KINDS = {"InferenceService"}

# What "ready" means per kind: the condition that must be True.
READY_CONDITION = {
    "CustomResourceDefinition": "Established",
    "Deployment": "Available",
    "InferenceService": "Ready",
}


def describe(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata", {})
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {where}{meta.get('name')}"


def applied_hash(obj: dict[str, Any]) -> str:
    """sha256 of the object as we apply it, minus the annotation itself (and Secret values, which
    are compared with the live object instead so that no derivative of them is stored)."""
    clean = copy.deepcopy(obj)
    clean.get("metadata", {}).get("annotations", {}).pop(HASH_ANNOTATION, None)
    if clean.get("kind") == "Secret":
        clean.pop("stringData", None)
        clean.pop("data", None)
    return hashlib.sha256(json.dumps(clean, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def secret_values(obj: dict[str, Any]) -> dict[str, str]:
    values = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
    values.update(obj.get("stringData") or {})
    return values


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def rollout_pending(live: dict[str, Any] | None) -> str | None:
    """What `kubectl rollout status` waits for (k8s.io/kubectl pkg/polymorphichelpers/rollout_status.go):
    every replica updated, no old replica left, every updated replica available. Available alone is
    also True while the old pods of a RollingUpdate still serve and the new ones never get ready."""
    if live is None:
        return None
    want = (live.get("spec") or {}).get("replicas", 1)
    st = live.get("status") or {}
    updated, total, available = st.get("updatedReplicas", 0), st.get("replicas", 0), st.get("availableReplicas", 0)
    if updated < want:
        return f"rollout: {updated} of {want} new replicas updated"
    if total > updated:
        return f"rollout: {total - updated} old replicas pending termination (new pods not ready)"
    if available < updated:
        return f"rollout: {available} of {updated} updated replicas available"
    return None


def covers(live: Any, want: Any) -> bool:
    """Every field we set has our value in the live object (others' fields ignored)."""
    if isinstance(want, dict):
        return isinstance(live, dict) and all(covers(live.get(k), v) for k, v in want.items())
    return live == want

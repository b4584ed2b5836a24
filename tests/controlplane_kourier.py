"""Kourier's data plane, emulated at the one place the control plane reads it: a KIngress's status.

A Knative Route is Ready only when its KIngress is. Kourier's controller (knative.dev/net-kourier
pkg/reconciler/ingress) marks a KIngress Ready after its status prober got the new config's hash back
from every Envoy pod of the kourier gateway: that is the data plane (Envoy, a C++ program, cannot run
here). So `KourierStatus` reports what Kourier reports once Envoy has the config, for every KIngress of
Kourier's class at its current generation: NetworkConfigured, LoadBalancerReady (public: Service kourier,
private: Service kourier-internal, in kourier-system) and Ready. Which revisions get which share of the
traffic is not here: the real Knative controller computes it into the Route's status and the KIngress's
spec, and KServe copies the Route's into the InferenceService's.
"""

from __future__ import annotations

import time
from typing import Any

CLASS_ANNOTATION = "networking.knative.dev/ingress.class"
KOURIER_CLASS = "kourier.ingress.networking.knative.dev"
API = "networking.internal.knative.dev/v1alpha1"


def kourier_status(cluster: Any) -> None:
    # every namespace's (missing_ok: Knative's CRDs may not be installed)
    ingresses = (cluster.request("GET", f"/apis/{API}/ingresses", missing_ok=True) or {}).get("items", [])
    for ing in ingresses:
        meta = ing["metadata"]
        if (meta.get("annotations") or {}).get(CLASS_ANNOTATION) != KOURIER_CLASS or meta.get("deletionTimestamp"):
            continue
        if (ing.get("status") or {}).get("observedGeneration") == meta["generation"]:
            continue
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        status = {"observedGeneration": meta["generation"],
                  "conditions": [{"type": t, "status": "True", "lastTransitionTime": now}
                                 for t in ("LoadBalancerReady", "NetworkConfigured", "Ready")],
                  "publicLoadBalancer": {"ingress": [{"domainInternal": "kourier.kourier-system.svc.cluster.local"}]},
                  "privateLoadBalancer": {"ingress": [{"domainInternal": "kourier-internal.kourier-system.svc.cluster.local"}]}}
        cluster.request("PATCH", f"/apis/{API}/namespaces/{meta['namespace']}/ingresses/{meta['name']}/status",
                        body={"status": status}, content_type="application/merge-patch+json")

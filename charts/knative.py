"""Step 2: Knative Serving (CRDs, core) with Kourier as its networking layer, from upstream manifests.

Kourier is chosen the way Knative and KServe document it: `ingress-class` in `config-network`
(documented in knative/networking config/config-network.yaml, vendored by knative/serving
knative-v1.21.1; KServe: docs/admin/serverless/kourier_networking). `config-features` keeps its
defaults (no pod-level securityContext, see charts/inference_service.py) except, on purpose and only
when models live on MLflow's ReadWriteOnce volume, `kubernetes.podspec-affinity` (the predictor must
be scheduled on MLflow's node).

`config-observability` turns on queue-proxy's request metrics in Prometheus format
(`request-metrics-protocol: prometheus`; knative/serving v0.48.2 pkg/observability/config.go reads
the `request-` prefixed metrics keys, config/core/configmaps/observability.yaml documents them). With it
each predictor pod's queue-proxy serves them at :9091/metrics (pkg/queue/sharedmain/otel.go, port
`http-usermetric`: pkg/reconciler/revision/resources/queue.go), which Prometheus scrapes pod by pod
(charts/prometheus.py); without it that port is declared but nothing listens (the default protocol is
`none`). Scraping the pod, never the route, keeps scale to zero working: a request through the route is
traffic to Knative and keeps a pod up.
"""

from __future__ import annotations

from typing import Any

from mlops_cli.config.settings import Config

from . import upstream
from .configmap_patch import ConfigMapPatch, apply_patches

UPSTREAM_KEYS = ("knative-crds", "knative-core", "kourier")
KOURIER_CLASS = "kourier.ingress.networking.knative.dev"
KOURIER_INTERNAL = "kourier-internal.kourier-system.svc.cluster.local"  # Kourier's cluster-local gateway
REQUEST_METRICS = {"request-metrics-protocol": "prometheus"}  # queue-proxy's default endpoint: :9091


def patches(config: Config) -> list[ConfigMapPatch]:
    from .inference_service import pinned_to_mlflow_node

    out = [ConfigMapPatch("knative-serving", "config-network", {"ingress-class": KOURIER_CLASS},
                          why="Knative routes through Kourier", manifest="knative-core"),
           ConfigMapPatch("knative-serving", "config-observability", REQUEST_METRICS,
                          why="queue-proxy serves request metrics per pod for Prometheus", manifest="knative-core")]
    if pinned_to_mlflow_node(config):
        out.append(ConfigMapPatch("knative-serving", "config-features", {"kubernetes.podspec-affinity": "enabled"},
                                  why="predictors follow MLflow's ReadWriteOnce volume to its node", manifest="knative-core"))
    return out


def objects(config: Config, *, missing_ok: bool = False) -> list[dict[str, Any]]:
    objs = [o for key in UPSTREAM_KEYS for o in upstream.load(config, key, missing_ok=missing_ok)]
    if missing_ok and upstream.local_file(config, "knative-core") is None:
        return objs  # `mlops render` lists the manifest and these patches instead
    return apply_patches(objs, patches(config), "knative")

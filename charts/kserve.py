"""Step 3: KServe (CRDs, controller), then its cluster serving runtimes, from upstream manifests.

The runtimes are a separate step because KServe's admission webhook validates them: they can only be
applied once the controller is Available.

Networking: we install Knative with Kourier, not Istio. KServe's `inferenceservice-config` ships
pointing at Istio (`localGatewayService: knative-local-gateway.istio-system...`, a top-level Istio
VirtualService per InferenceService). KServe's documented way to run on Kourier is
`"disableIstioVirtualHost": true` in its `ingress` section (kserve/website docs/admin/serverless/
kourier_networking); KServe then reports the predictor's own Knative address as the
InferenceService's address (`inference_service.predictor_url`). The local gateway Service key is pointed at
Kourier's internal gateway Service so nothing in the config names a Service that does not exist.
Keys checked against the real v0.20.0 ConfigMap (config/configmap/inferenceservice.yaml) by the tests.
"""

from __future__ import annotations

from typing import Any

from mlops_cli.config.settings import Config

from . import upstream
from .configmap_patch import ConfigMapPatch, apply_patches
from .knative import KOURIER_INTERNAL

CONFIG_NAMESPACE = "kserve"
CONFIG_NAME = "inferenceservice-config"


def patches(config: Config) -> list[ConfigMapPatch]:
    ingress = {"disableIstioVirtualHost": True, "localGatewayService": KOURIER_INTERNAL}
    return [ConfigMapPatch(CONFIG_NAMESPACE, CONFIG_NAME, ingress, json_key="ingress", why="Kourier, not Istio",
                           manifest="kserve")]


def objects(config: Config, *, missing_ok: bool = False) -> list[dict[str, Any]]:
    objs = upstream.load(config, "kserve", missing_ok=missing_ok)
    if not objs and missing_ok:
        return []  # `mlops render` lists the manifest and these patches instead
    return apply_patches(objs, patches(config), "kserve")


def runtimes(config: Config, *, missing_ok: bool = False) -> list[dict[str, Any]]:
    return upstream.load(config, "kserve-runtimes", missing_ok=missing_ok)

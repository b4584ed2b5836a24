"""Step 2: Knative Serving (CRDs, core) with Kourier as its networking layer, from upstream manifests."""

from __future__ import annotations

from typing import Any

from mlops_cli.core.config import Config

from . import upstream

KOURIER_CLASS = "kourier.ingress.networking.knative.dev"


def objects(config: Config) -> list[dict[str, Any]]:
    objs = upstream.load(config, "knative-crds") + upstream.load(config, "knative-core") + upstream.load(config, "kourier")
    for obj in objs:
        # Knative picks its networking layer from config-network; set it on the upstream object itself
        # (a second object of the same name would fight it for the field on every apply).
        if obj["kind"] == "ConfigMap" and obj["metadata"].get("name") == "config-network" \
                and obj["metadata"].get("namespace") == "knative-serving":
            obj.setdefault("data", {})["ingress-class"] = KOURIER_CLASS
    return objs

"""NetworkPolicies: only the gateway (and Knative's own data path) may reach the predictor pods.

In KServe's serverless mode a request to the predictor passes Knative's activator (knative-serving)
and the Kourier gateway (kourier-system) before the pod, so those namespaces must be let in too; no
other pod of the cluster can reach the predictor. Prometheus may scrape metrics ports.
"""

from __future__ import annotations

from typing import Any

from mlops_cli.core.config import Config

from .ingress_nginx import CONTROLLER_NAMESPACE
from .objects import metadata, selector

NS_LABEL = "kubernetes.io/metadata.name"


def _from_namespace(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {NS_LABEL: name}}}


def predictor_policy(config: Config) -> dict[str, Any]:
    ns = config.kubernetes.namespace
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata("predictor-from-gateway-only", "predictor", ns),
        "spec": {
            "podSelector": {"matchLabels": {"serving.kserve.io/inferenceservice": config.serving.model_name}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [
                {"podSelector": {"matchLabels": selector("gateway")}},
                _from_namespace("knative-serving"),
                _from_namespace("kourier-system"),
                {"podSelector": {"matchLabels": selector("prometheus")}},
            ]}],
        },
    }


def gateway_policy(config: Config) -> dict[str, Any]:
    ns = config.kubernetes.namespace
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata("gateway-from-ingress", "gateway", ns),
        "spec": {
            "podSelector": {"matchLabels": selector("gateway")},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [_from_namespace(CONTROLLER_NAMESPACE), {"podSelector": {"matchLabels": selector("prometheus")}}],
                         "ports": [{"protocol": "TCP", "port": 8080}]}],
        },
    }


def objects(config: Config) -> list[dict[str, Any]]:
    return [predictor_policy(config), gateway_policy(config)]

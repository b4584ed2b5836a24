"""The install order of the platform: namespace, then steps 1-8, each a list of objects.

Example::

    for step in platform_steps(cfg, None):
        print(step.title, len(step.objects))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlops_cli.config.settings import Config

from .secrets import PlatformSecrets, admin_auth


@dataclass
class Step:
    key: str
    title: str
    objects: list[dict[str, Any]] = field(default_factory=list)
    upstream: tuple[str, ...] = ()   # charts.upstream manifest keys this step applies
    patches: list[Any] = field(default_factory=list)   # ConfigMapPatch made to those manifests
    # Of `objects`, ours on top of the upstream install: applied (with `patches`) even when someone else's
    # install of the upstream part is reused, and deleted by `down` before the upstream part.
    own: list[dict[str, Any]] = field(default_factory=list)


def namespace(config: Config) -> dict[str, Any]:
    from .objects import labels

    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": config.kubernetes.namespace,
                         "labels": {**labels("platform"), **POD_SECURITY}}}


# Enforced, not only warned: the API server refuses any pod of ours that is not `restricted`.
POD_SECURITY = {"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest",
                "pod-security.kubernetes.io/warn": "restricted", "pod-security.kubernetes.io/audit": "restricted"}


def platform_steps(config: Config, secrets: PlatformSecrets | None, *, missing_ok: bool = False) -> list[Step]:
    """secrets=None renders Secrets without values: enough to plan deletions, never to apply.
    missing_ok (`mlops render`): upstream manifests neither bundled nor cached are left out, not downloaded."""
    from . import cert_manager, drift, edge, gateway, grafana, inference_service, jaeger, knative, kserve, loki, loop_job, \
        mlflow, network_policies, prometheus, upstream

    m = missing_ok
    edge_own = edge.own_objects(config, secrets)
    steps = [
        Step("namespace", "0. namespace", [namespace(config)]),
        Step("cert-manager", "1. cert-manager", cert_manager.objects(config, missing_ok=m), ("cert-manager",)),
        Step("knative", "2. Knative Serving + Kourier", knative.objects(config, missing_ok=m), knative.UPSTREAM_KEYS,
             knative.patches(config)),
        Step("kserve", "3. KServe", kserve.objects(config, missing_ok=m), ("kserve",), kserve.patches(config)),
        Step("kserve-runtimes", "3. KServe serving runtimes",
             kserve.runtimes(config, missing_ok=m) + [kserve.storage_container(config)], ("kserve-runtimes",),
             own=[kserve.storage_container(config)]),
        Step("edge", "4. Envoy Gateway: HTTPS + basic auth",
             upstream.load(config, "envoy-gateway", missing_ok=m) + edge_own, ("envoy-gateway",), own=edge_own),
        Step("observability", "5. Prometheus, Grafana, Jaeger, Loki",
             [admin_auth(config, secrets.admin if secrets is not None else None)]
             + prometheus.objects(config) + grafana.objects(config) + jaeger.objects(config) + loki.objects(config)),
        Step("mlflow", "6. MLflow", mlflow.objects(config, secrets)),
        Step("drift", "7. drift service", drift.objects(config)),
        Step("gateway", "8. gateway", gateway.objects(config) + [inference_service.predictor_service_account(config)]
             + network_policies.objects(config)),
    ]
    if config.loop.schedule:  # `mlops loop --once` every [loop].schedule (charts/loop_job.py)
        steps.append(Step("loop", "9. closed loop (CronJob)", loop_job.objects(config)))
    return steps


def all_objects(config: Config, secrets: PlatformSecrets | None) -> list[dict[str, Any]]:
    return [obj for step in platform_steps(config, secrets) for obj in step.objects]

"""The `kubernetes` target: the platform installed into any cluster a kubeconfig context reaches.

`up` and `down` live in kubernetes_install.py, `deploy` (canary, promote, rollback) in
kubernetes_deploy.py; here are the connection, the checks, `status`, `predict` through the edge
(kubernetes_edge.py) and `logs`.
"""

from __future__ import annotations

import os
import ssl
from typing import Any, Iterator

from ..adapters.kube_apply import KubeCluster
from ..adapters.kube_objects import condition, secret_values
from ..common.errors import GatewayOverloaded, MlopsError, NotFoundError, PreflightError, UnreachableError, gateway_refusal
from ..config.settings import Config
from .base import ComponentStatus
from .kubernetes_deploy import KubernetesDeploy
from .kubernetes_edge import edge_request, edge_trust, service_request
from .kubernetes_install import KubernetesInstall

# Deployments whose Available condition says a component works, in the order `status` lists them.
COMPONENTS: list[tuple[str, str, str]] = [
    ("cert-manager", "cert-manager", "cert-manager-webhook"),
    ("knative", "knative-serving", "controller"),
    ("kourier", "kourier-system", "3scale-kourier-gateway"),
    ("kserve", "kserve", "kserve-controller-manager"),
    ("envoy-gateway", "envoy-gateway-system", "envoy-gateway"),
    ("prometheus", "", "prometheus"),
    ("grafana", "", "grafana"),
    ("jaeger", "", "jaeger"),
    ("loki", "", "loki"),
    ("mlflow", "", "mlflow"),
    ("drift", "", "drift"),
    ("gateway", "", "gateway"),
]


class KubernetesTarget(KubernetesInstall, KubernetesDeploy):
    name = "kubernetes"

    def __init__(self, config: Config, cluster: KubeCluster | None = None) -> None:
        self.config = config
        self._cluster = cluster

    # --- connection ------------------------------------------------------------------------------

    @property
    def cluster(self) -> KubeCluster:
        if self._cluster is None:
            k = self.config.kubernetes
            kubeconfig = str(self.config.path(k.kubeconfig)) if k.kubeconfig else ""
            self._cluster = KubeCluster.connect(kubeconfig, k.context, k.namespace)
        return self._cluster

    def checks(self) -> list[Any]:
        from ..common.check import Check

        k = self.config.kubernetes
        path = self.config.path(k.kubeconfig) if k.kubeconfig else None
        if path is None:
            env = os.environ.get("KUBECONFIG", "")
            path = self.config.path(env.split(os.pathsep)[0]) if env else self.config.path("~/.kube/config")
        present = path.is_file()
        checks = [Check("kubeconfig present", present, str(path),
                        "" if present else "set [kubernetes].kubeconfig or KUBECONFIG to your cluster's kubeconfig")]
        # the cluster's own checks first (each needs the one before); the support warning never blocks, so last
        support = _upstream_support_check(self.config)
        if present:
            try:
                cluster = self.cluster
                checks.append(Check("kubeconfig context", True, f"{cluster.context or '(current)'} -> {cluster.server}"))
            except MlopsError as exc:
                checks.append(Check("kubeconfig context", False, exc.message, exc.hint or ""))
                return [*checks, support]
            try:
                version = cluster.request("GET", "/version", what="the API server version")
                checks.append(Check("Kubernetes API server", True, f"{cluster.server}: {version.get('gitVersion', '?')}"))
            except MlopsError as exc:
                checks.append(Check("Kubernetes API server", False, exc.message, exc.hint or ""))
        return [*checks, support]

    # --- status ----------------------------------------------------------------------------------

    def status(self) -> list[ComponentStatus]:
        cluster = self.cluster
        out = []
        for component, namespace, name in COMPONENTS:
            live = cluster.get({"apiVersion": "apps/v1", "kind": "Deployment",
                                "metadata": {"name": name, "namespace": namespace or self.config.kubernetes.namespace}})
            if live is None:
                out.append(ComponentStatus(component, detail="not installed", expected=False))
                continue
            available = condition(live, "Available")
            st = live.get("status") or {}
            image = (((live.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers", [{}])[0].get("image", "")
            out.append(ComponentStatus(
                component, healthy=bool(available and available.get("status") == "True"), version=image.rpartition(":")[2],
                detail=f"{st.get('readyReplicas', 0)}/{st.get('replicas', 0)} ready"))
        out.append(self._isvc_status())
        return out

    def _isvc_status(self) -> ComponentStatus:
        from charts.inference_service import VERSION_ANNOTATION

        live = self.cluster.get(self._isvc_identity())
        if live is None:
            return ComponentStatus("predictor", detail="no model deployed (mlops deploy --target kubernetes)", expected=False)
        ready = condition(live, "Ready")
        version = live["metadata"].get("annotations", {}).get(VERSION_ANNOTATION, "")
        split = self._rollouts().split(live)
        return ComponentStatus("predictor", url=(live.get("status") or {}).get("url", ""),
                               healthy=bool(ready and ready.get("status") == "True"), version=version,
                               detail=f"traffic: {split.summary() if split else '-'}")

    # --- predict / logs --------------------------------------------------------------------------

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        import httpx

        from charts import secrets as chart_secrets

        from ..common.secrets import Secrets

        env = Secrets.from_env()
        user, password = env.gateway_user or self.config.gateway.user, env.gateway_password
        if not password:
            live = self.cluster.get(chart_secrets.gateway_auth(self.config, None)) or {}
            values = secret_values(live)
            user, password = values.get("user", user), values.get("password")
        if not password:
            raise PreflightError("no gateway credentials: MLOPS_GATEWAY_PASSWORD is unset and the cluster has no gateway Secret",
                                 hint="run `mlops up --target kubernetes` first, or export MLOPS_GATEWAY_USER/MLOPS_GATEWAY_PASSWORD")
        if self.config.kubernetes.predict_via == "service":
            # plain HTTP inside the cluster: no certificate to trust, so no Secret to read (the loop's pod may not)
            url, headers, extensions, verify = service_request(self.config, "/predict/batch"), {}, {}, True
            where = "the gateway's Service"
        else:
            where = "the gateway's public listener"
            url, headers, extensions = edge_request(self.config, "/predict/batch")
            verify = edge_trust(self.config, self.cluster)
        try:
            with httpx.Client(verify=verify, timeout=self.config.gateway.timeout_s + 5) as client:
                response = client.post(url, json={"texts": texts}, auth=(user, password), headers=headers, extensions=extensions)
        except httpx.ConnectError as exc:
            if isinstance(exc.__context__, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise PreflightError(f"the edge at {url} presented a certificate we do not trust: {exc}",
                                     hint="self-signed: the Secret's certificate is trusted (leave [kubernetes].tls_issuer empty); "
                                          "a private CA: set [kubernetes].tls_ca_bundle") from None
            raise UnreachableError(f"cannot reach {where} at {url}: {exc.__class__.__name__}",
                                   hint=_unreachable_hint(self.config)) from None
        except httpx.HTTPError as exc:
            raise UnreachableError(f"cannot reach {where} at {url}: {exc.__class__.__name__}",
                                   hint=_unreachable_hint(self.config)) from None
        shed = GatewayOverloaded.from_reply(response.status_code, response.headers, response.text[:200])
        if shed is not None:
            raise shed  # predict --file waits as asked and sends the batch again
        if response.status_code != 200:
            raise gateway_refusal(response.status_code, f"gateway at {url} answered {response.status_code}: {response.text[:200]}",
                                  hint="401: wrong credentials; 503: no model ready (mlops deploy --target kubernetes)")
        return response.json()["predictions"]

    def logs(self, component: str, *, follow: bool = False, lines: int = 50) -> Iterator[str]:
        known = {c for c, _, _ in COMPONENTS} | {"predictor"}
        if component not in known:
            raise NotFoundError(f"unknown component {component!r}", hint=f"one of: {', '.join(sorted(known))}")
        ns = self.config.kubernetes.namespace
        if component == "predictor":
            selector = f"serving.kserve.io/inferenceservice={self.config.serving.model_name}"
        else:
            match = next(c for c in COMPONENTS if c[0] == component)
            ns = match[1] or ns
            selector = f"app.kubernetes.io/name={match[2]}" if not match[1] else ""
            if match[1]:  # upstream components: their own labels; pick pods by the Deployment's selector
                dep = self.cluster.get({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": match[2], "namespace": ns}}) or {}
                labels = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
                selector = ",".join(f"{k}={v}" for k, v in labels.items())
        return self.cluster.pod_logs(ns, selector, lines=lines, follow=follow)


def _unreachable_hint(config: Config) -> str:
    k = config.kubernetes
    if k.predict_via == "service":
        return ('[kubernetes].predict_via = "service" works only in a pod of the namespace our NetworkPolicies let in '
                '(the loop\'s CronJob); elsewhere leave it "edge"')
    return (f"make {k.ingress_host} resolve to the Envoy Gateway load balancer (envoy-gateway-system), "
            "or set [kubernetes].ingress_address (e.g. a port-forward)")


def _upstream_support_check(config: Config) -> Any:
    """A warning, never a failure: an upstream release past its support still installs and runs."""
    from datetime import date

    from charts.upstream_versions import AS_OF, warnings

    from ..common.check import Check

    found = warnings(config, date.today())
    if not found:
        return Check("upstream versions supported", True, f"every [kubernetes] version in support (table as of {AS_OF})",
                     required=False)
    return Check("upstream versions supported", False, "; ".join(found),
                 "take a supported release: set its [kubernetes].*_version, then run `mlops lock --upgrade`",
                 required=False)

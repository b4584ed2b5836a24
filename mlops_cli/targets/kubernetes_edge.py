"""How `mlops predict --target kubernetes` reaches the gateway: HTTPS to the Envoy Gateway listener
(charts/edge.py), trusting its certificate on purpose, never by turning verification off; or, with
`[kubernetes].predict_via = "service"` (the loop's pod: see `service_request`), its Service in the cluster.

Trust, first that applies:
1. `[kubernetes].tls_ca_bundle`: a PEM file you name (a private CA behind your ClusterIssuer).
2. No `[kubernetes].tls_issuer`: the listener's certificate is cert-manager's self-signed one, so the
   client trusts exactly that certificate, read from the Secret cert-manager wrote (`ca.crt`, else
   `tls.crt`). A SelfSigned issuer signs the certificate with its own key ("the private key of the
   certificate will be used to sign the certificate itself", cert-manager.io/docs/configuration/selfsigned),
   so the certificate is its own trust anchor; cert-manager's selfsigned issuer sets `ca.crt` to it.
3. Otherwise (a public ClusterIssuer such as Let's Encrypt): the system's trust store.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

from ..common.errors import PreflightError

if TYPE_CHECKING:
    from ..adapters.kube_apply import KubeCluster
    from ..config.settings import Config


def edge_request(config: Config, path: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """URL, headers and httpx extensions for a request to the public listener.

    `[kubernetes].ingress_address` (host:port, e.g. a `kubectl port-forward` to the Envoy proxy on kind)
    changes where we connect, not whom we talk to: Host and SNI stay `ingress_host`, so Envoy picks the
    listener and route, and the certificate is checked against that name."""
    k = config.kubernetes
    url = f"https://{k.ingress_address or k.ingress_host}{path}"
    if not k.ingress_address:
        return url, {}, {}
    return url, {"Host": k.ingress_host}, {"sni_hostname": k.ingress_host}


def service_request(config: Config, path: str) -> str:
    """The gateway's Service, from inside the cluster: what the loop's CronJob probes a canary through.

    Its pod may not read Secrets (charts/loop_job.py's Role), so it cannot pin the edge's self-signed
    certificate, and `ingress_host` is the public name, often not resolvable or not routed from a pod (a
    port-forward's `ingress_address` never is). The gateway checks basic auth itself (charts/edge.py), the
    credentials reach the pod as secretKeyRef env (set by the kubelet, no API read), and the namespace's
    NetworkPolicies let exactly that pod in (loop_job.network_policies). Plain HTTP as Envoy's hop to the
    gateway and the loop's calls to MLflow and Prometheus: the cluster network, never the public one."""
    from charts import gateway

    return f"http://gateway.{config.kubernetes.namespace}.svc.cluster.local:{gateway.SERVICE_PORT}{path}"


def edge_trust(config: Config, cluster: KubeCluster) -> ssl.SSLContext | bool:
    k = config.kubernetes
    if k.tls_ca_bundle:
        bundle = config.path(k.tls_ca_bundle)   # relative to the project, like every path in mlops.toml
        try:
            return ssl.create_default_context(cafile=str(bundle))
        except (OSError, ssl.SSLError) as exc:
            raise PreflightError(f"[kubernetes].tls_ca_bundle {str(bundle)!r} is not a readable PEM bundle: {exc}",
                                 hint="point it at the CA certificate(s) that signed the edge's certificate") from None
    if k.tls_issuer:
        return True  # a real issuer: the system trust store decides
    return ssl.create_default_context(cadata=_self_signed_pem(config, cluster))


def _self_signed_pem(config: Config, cluster: KubeCluster) -> str:
    from charts import edge

    from ..adapters.kube_objects import secret_values

    ns = config.kubernetes.namespace
    live = cluster.get({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": edge.TLS_SECRET, "namespace": ns}})
    values = secret_values(live) if live else {}
    pem = values.get("ca.crt") or values.get("tls.crt")
    if not pem:
        raise PreflightError(f"the edge certificate is not issued yet: Secret {ns}/{edge.TLS_SECRET} has no ca.crt or tls.crt",
                             hint=f"check cert-manager: kubectl -n {ns} describe certificate {edge.GATEWAY}; "
                                  "or set [kubernetes].tls_ca_bundle")
    return pem

"""The one thing of cert-manager the tests do themselves: issue what a Certificate asks for, and inject its CA.

cert-manager's programs cannot be built here: its controller, webhook and cainjector are the modules
github.com/cert-manager/cert-manager/cmd/{controller,webhook,cainjector}, never tagged, and the Go module
proxy has no version of them (`go list -m -versions` 404; a pseudo-version needs a commit the proxy
refuses to resolve: "403 This module version is not available", rechecked 2026-12-06 for v1.21.2).

So cert-manager's CRDs are served by the real API server (its release file's CRDs, applied as an install
that `mlops up` finds and reuses: `--reuse-existing`), and `CertIssuer` does, for every Certificate, what
the controller and cainjector would: a Secret `spec.secretName` of type kubernetes.io/tls with tls.crt,
tls.key and ca.crt for `spec.dnsNames` (signed by the test CA, where a selfSigned Issuer would sign it
with its own key: the same trust, one CA less), and the CA written into every webhook configuration
annotated `cert-manager.io/inject-ca-from: <namespace>/<certificate>`. It never sets a Certificate's
status (cert-manager's verdict), and cert-manager's validating webhook does not run: Issuers and
Certificates are checked by their CRD schemas only.
"""

from __future__ import annotations

import base64
from typing import Any

INJECT = "cert-manager.io/inject-ca-from"
HOOK_KINDS = (("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
              ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"))


class CertIssuer:
    def __init__(self, plane: Any) -> None:
        self.plane = plane
        self.issued: dict[str, bytes] = {}  # namespace/certificate -> CA of its Secret

    def sync(self, cluster: Any) -> None:
        # every namespace's (missing_ok: cert-manager's CRDs may not be installed)
        certificates = (cluster.request("GET", "/apis/cert-manager.io/v1/certificates", missing_ok=True) or {}).get("items", [])
        for cert in certificates:
            self._issue(cluster, cert)
        for api_version, kind in HOOK_KINDS:
            for hook in cluster.list_objects(api_version, kind):
                self._inject(cluster, {"apiVersion": api_version, "kind": kind, **hook})

    def _issue(self, cluster: Any, cert: dict[str, Any]) -> None:
        ns, name = cert["metadata"]["namespace"], cert["metadata"]["name"]
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": cert["spec"]["secretName"], "namespace": ns}}
        live = cluster.get(secret)
        if live is None:
            hosts = tuple(cert["spec"].get("dnsNames") or []) + tuple(cert["spec"].get("ipAddresses") or [])
            pair = self.plane.ca.issue(f"{ns}-{name}", common_name=cert["spec"].get("commonName") or name,
                                       hosts=hosts or (name,), directory=self.plane.workdir / "issued")
            data = {"tls.crt": pair.cert.read_bytes(), "tls.key": pair.key.read_bytes(), "ca.crt": self.plane.ca.pem}
            live = {**secret, "type": "kubernetes.io/tls",
                    "metadata": {**secret["metadata"], "annotations": {"cert-manager.io/certificate-name": name}},
                    "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}
            cluster.request("POST", f"/api/v1/namespaces/{ns}/secrets", body=live)
        self.issued[f"{ns}/{name}"] = base64.b64decode((live.get("data") or {}).get("ca.crt", ""))

    def _inject(self, cluster: Any, hook: dict[str, Any]) -> None:
        source = (hook["metadata"].get("annotations") or {}).get(INJECT)
        ca = self.issued.get(source or "")
        if not ca:
            return
        bundle = base64.b64encode(ca).decode()
        if all(h["clientConfig"].get("caBundle") == bundle for h in hook.get("webhooks") or []):
            return
        patch = {"webhooks": [{"name": h["name"], "clientConfig": {"caBundle": bundle}} for h in hook["webhooks"]]}
        plural = hook["kind"].lower() + "s"
        cluster.request("PATCH", f"/apis/admissionregistration.k8s.io/v1/{plural}/{hook['metadata']['name']}",
                        body=patch, content_type="application/strategic-merge-patch+json")

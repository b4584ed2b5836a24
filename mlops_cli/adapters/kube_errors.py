"""What the Kubernetes API server's refusals and our waits end in: one message naming the object and the
status, and a hint that depends on who asked (a kubeconfig user, or a pod's ServiceAccount in-cluster)."""

from __future__ import annotations

import base64
import json

from ..common.errors import MlopsError

SERVICE_ACCOUNT_USER = "system:serviceaccount:"  # k8s.io/apiserver pkg/authentication/serviceaccount/util.go MakeUsername


def token_service_account(token: str) -> str:
    """'namespace/name' of the ServiceAccount a pod's token was issued to, from its `sub` claim (k8s.io/kubernetes
    pkg/serviceaccount/claims.go: sub = system:serviceaccount:<namespace>:<name>); '' for any other token. Only to
    name it in a message: the API server checks the signature, we do not."""
    try:
        payload = token.split(".")[1]
        subject = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]
    except (IndexError, ValueError, KeyError, TypeError):
        return ""
    if not isinstance(subject, str) or not subject.startswith(SERVICE_ACCOUNT_USER):
        return ""
    return "/".join(subject[len(SERVICE_ACCOUNT_USER):].split(":", 1))


class KubeApiError(MlopsError):
    """The API server refused a request; names the object, the status and its message. `service_account` is set
    when the client is a pod's ServiceAccount ('namespace/name', or '?' when its token does not say)."""

    def __init__(self, verb: str, what: str, status: int, reason: str, message: str, *, service_account: str = "") -> None:
        hints = {
            409: "another writer changed it at the same time or it is being deleted: re-run the command, it resumes",
            403: "the kubeconfig user lacks permission for this: use a cluster-admin context",
            404: "the API for this kind is not served: was its CRD installed (`mlops up`)?",
        }
        if service_account:
            # in the loop's CronJob pod there is no kubeconfig and no other identity: the Role we render decides
            who = "this pod's ServiceAccount" if service_account == "?" else f"ServiceAccount {service_account}"
            hints[403] = (f"in-cluster as {who}, there is no context to switch to: its Role (charts/loop_job.py `role`, "
                          "rendered by `mlops render`) does not grant this verb on this resource, so either that Role lacks "
                          "what a loop pass needs (a bug in the Role) or the pass did what it should not (a bug in the pass)")
        hint = hints.get(status, "fix the cause shown, then re-run: finished objects are reported unchanged")
        if status == 404 and message.startswith("namespaces "):
            hint = "its namespace does not exist: run `mlops up --target kubernetes` first"
        if status == 403 and "being terminated" in message:
            # NamespaceLifecycle admission, not RBAC: an earlier delete of the namespace has not finished
            hint = "the namespace is still being deleted (Terminating): wait until it is gone (`mlops down` waits for it), then re-run"
        if message.startswith("admission webhook ") and " denied the request" in message:
            # a webhook's verdict, whatever its status (k8s.io/apiserver admission/plugin/webhook/errors ToStatusErr;
            # controller-runtime's denials are 403): not RBAC
            hint = "an admission webhook of the cluster refused it for the reason it gives (its owner's policy, not a permission)"
        super().__init__(f"{verb} {what}: API server answered {status} {reason}: {message}".rstrip(": "), hint=hint)
        self.status = status


class KubeTimeout(MlopsError):
    """A step waited too long for an object; names it and its last events."""

"""The objects in a cluster that own AWS resources: Services of type LoadBalancer and PersistentVolumeClaims.

`mlops down --target eks` deletes all of them, in every namespace (ours, Envoy Gateway's, Kourier's, and
whatever a user added), and waits until the API server no longer has them: the Service controller keeps a
Service (finalizer service.kubernetes.io/load-balancer-cleanup) until the cloud load balancer is deleted,
and a PVC stays until its volume is released. The kubernetes client is imported inside functions.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from ..common.errors import MlopsError


def _api(kubeconfig: Path):
    from kubernetes import client, config

    try:
        return client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    except Exception as exc:  # the client raises ConfigException, OSError, ExecError...: all mean "cannot connect"
        raise MlopsError(f"cannot use the kubeconfig {kubeconfig}: {exc}") from None


def _items(call: Callable[..., Any]) -> list[dict[str, Any]]:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return json.loads(call(_preload_content=False, _request_timeout=30).data)["items"]
    except ApiException as exc:
        raise MlopsError(f"the cluster refused the list: {exc.status} {exc.reason}") from None
    except HTTPError as exc:
        raise MlopsError(f"the cluster is not reachable: {exc}") from None


def _key(obj: dict[str, Any]) -> str:
    return f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"


def inventory(kubeconfig: Path) -> tuple[set[str], set[str]]:
    """The LoadBalancer Services and the PVCs of the cluster, as "<namespace>/<name>"."""
    api = _api(kubeconfig)
    services = {_key(s) for s in _items(api.list_service_for_all_namespaces)
                if (s.get("spec") or {}).get("type") == "LoadBalancer"}
    return services, {_key(c) for c in _items(api.list_persistent_volume_claim_for_all_namespaces)}


def retained_claims(kubeconfig: Path) -> set[str]:
    """PVCs bound to a volume whose reclaim policy is Retain: their EBS volumes outlive the PVC on purpose."""
    api = _api(kubeconfig)
    out = set()
    for pv in _items(api.list_persistent_volume):
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        if (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy") == "Retain" and ref.get("name"):
            out.add(f"{ref.get('namespace', '')}/{ref['name']}")
    return out


def delete_and_wait(kubeconfig: Path, services: set[str], claims: set[str], *, timeout_s: float, interval_s: float,
                    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
    """Delete those Services and PVCs (already gone is fine) and wait until the API server no longer has them."""
    from kubernetes.client.exceptions import ApiException

    api = _api(kubeconfig)
    deletes = [(key, api.delete_namespaced_service, "Service") for key in sorted(services)]
    deletes += [(key, api.delete_namespaced_persistent_volume_claim, "PersistentVolumeClaim") for key in sorted(claims)]
    for key, delete, kind in deletes:
        ns, name = key.split("/", 1)
        try:
            delete(name, ns, _request_timeout=30)
        except ApiException as exc:
            if exc.status != 404:
                raise MlopsError(f"could not delete {kind} {key}: {exc.status} {exc.reason}") from None
    deadline = clock() + timeout_s
    while True:
        now_services, now_claims = inventory(kubeconfig)
        left = (now_services & services) | (now_claims & claims)
        if not left:
            return
        if clock() >= deadline:
            raise MlopsError(f"{', '.join(sorted(left))} still present {timeout_s:g} s after deletion "
                             "(a finalizer holds them)")
        sleep(interval_s)

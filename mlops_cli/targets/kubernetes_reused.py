"""Our settings in a reused install's ConfigMaps, and theirs put back by `down`.

`up --reuse-existing` sets a few keys in ConfigMaps someone else installed (`Step.patches`: Knative's
`config-network`, KServe's `inferenceservice-config`). Before the first change, the values they had are
kept in a ConfigMap of ours (RECORD, in our namespace); a second `up` sees our values live, so the first
record wins. `down` writes their values back where the live value is still the one we set (a value they
changed since is theirs to keep), then takes our field manager out of the object's `managedFields`, so
nothing in their install says mlops was there.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..adapters.kube_objects import SETTINGS_MANAGER, describe
from .base import StepResult

if TYPE_CHECKING:
    from charts.configmap_patch import ConfigMapPatch

    from ..adapters.kube_apply import KubeCluster

RECORD = "mlops-reused-settings"


def record_identity(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": RECORD, "namespace": namespace}}


def _key(patch: "ConfigMapPatch") -> str:
    return f"{patch.namespace}.{patch.name}"  # both DNS names: a valid ConfigMap data key


def _current(patch: "ConfigMapPatch", live: dict[str, Any]) -> dict[str, Any]:
    """The live values of the keys `patch` sets (None: the key is absent)."""
    data = live.get("data") or {}
    if patch.json_key is None:
        return {k: data.get(k) for k in patch.values}
    document = json.loads(data.get(patch.json_key) or "{}")
    return {k: document.get(k) for k in patch.values}


def _ours(patch: "ConfigMapPatch") -> dict[str, Any]:
    return {k: (v if patch.json_key else str(v)) for k, v in patch.values.items()}


def remember(cluster: "KubeCluster", namespace: str, patch: "ConfigMapPatch", live: dict[str, Any]) -> None:
    """Keep what `live` holds under the keys `patch` sets, unless an earlier `up` kept it already."""
    record = cluster.get(record_identity(namespace))
    data = dict((record or {}).get("data") or {})
    if _key(patch) in data:
        return
    data[_key(patch)] = json.dumps({"json_key": patch.json_key, "theirs": _current(patch, live), "ours": _ours(patch)},
                                   sort_keys=True)
    cluster.apply({**record_identity(namespace), "data": data})


def restore(cluster: "KubeCluster", namespace: str) -> list[StepResult]:
    """Put back every value recorded by `remember` that still holds ours; then forget the record."""
    from ..adapters.kube_apply import KubeApiError

    record = cluster.get(record_identity(namespace))
    if record is None:
        return []
    results = []
    for key, text in sorted((record.get("data") or {}).items()):
        kept = json.loads(text)
        ns, _, name = key.partition(".")
        identity = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}}
        live = cluster.get(identity)
        if live is None:
            results.append(StepResult(describe(identity), "absent", "settings in a reused install"))
            continue
        data = _restored(live.get("data") or {}, kept)
        if data is not None:  # a JSON merge patch: null deletes a key that was not there before us
            cluster.request("PATCH", cluster.path(identity), query=[("fieldManager", SETTINGS_MANAGER)], body={"data": data},
                            content_type="application/merge-patch+json", what=describe(identity))
        _forget_manager(cluster, identity, KubeApiError)
        results.append(StepResult(describe(identity), "restored" if data else "unchanged",
                                  "their settings put back (a value they changed since is left)"))
    cluster.delete(record_identity(namespace))
    return results


def _restored(data: dict[str, str], kept: dict[str, Any]) -> dict[str, Any] | None:
    """The data keys to write so each value still ours is theirs again; None when nothing is ours any more."""
    theirs, ours, json_key = kept["theirs"], kept["ours"], kept.get("json_key")
    if json_key is None:
        changed = {k: theirs.get(k) for k, v in ours.items() if data.get(k) == v}
        return changed or None
    try:
        document = json.loads(data.get(json_key) or "{}")
    except json.JSONDecodeError:
        return None  # rewritten by them since: not ours to touch
    back = [k for k, v in ours.items() if document.get(k) == v]
    if not back:
        return None
    document.update({k: theirs.get(k) for k in back})
    return {json_key: json.dumps(document, indent=2)}


def _forget_manager(cluster: "KubeCluster", identity: dict[str, Any], api_error: type[Exception]) -> None:
    """Drop SETTINGS_MANAGER's entries from managedFields: a non-apply write may set the list, and the API
    server takes it as given (kubernetes.io/docs/reference/using-api/server-side-apply, "Clearing managedFields")."""
    live = cluster.get(identity)
    entries = (live or {}).get("metadata", {}).get("managedFields") or []
    kept = [e for e in entries if e.get("manager") != SETTINGS_MANAGER]
    if live is None or len(kept) == len(entries):
        return
    patch = [{"op": "test", "path": "/metadata/resourceVersion", "value": live["metadata"]["resourceVersion"]},
             {"op": "replace", "path": "/metadata/managedFields", "value": kept or [{}]}]
    try:
        cluster.request("PATCH", cluster.path(identity), body=patch, content_type="application/json-patch+json",
                        what=describe(identity))
    except api_error as exc:
        if exc.status not in (409, 422):  # 422: the resourceVersion test failed, it changed under us
            raise
        # the values are theirs again already; only the manager's name stays listed

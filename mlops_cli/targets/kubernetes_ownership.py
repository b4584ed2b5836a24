"""What in a cluster `mlops` installed, so `up` never silently takes over someone else's install and
`down` never deletes it.

An object is ours when we applied it: it carries our applied-hash annotation or lists our field
manager in `metadata.managedFields` (server-side apply records every manager there). A component
(cert-manager, Knative, the edge, ...) that is already running without those marks was installed by
someone else: `up` refuses unless told to reuse it, and then leaves it exactly as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..adapters.kube_objects import FIELD_MANAGER, HASH_ANNOTATION, describe

if TYPE_CHECKING:
    from ..adapters.kube_apply import KubeCluster

# The kinds that say "this component is installed": its controllers and its API types.
MARKER_KINDS = {"Deployment", "CustomResourceDefinition"}


def is_ours(live: dict[str, Any]) -> bool:
    meta = live.get("metadata") or {}
    if HASH_ANNOTATION in (meta.get("annotations") or {}):
        return True
    return any(entry.get("manager") == FIELD_MANAGER for entry in meta.get("managedFields") or [])


def foreign(cluster: "KubeCluster", objects: list[dict[str, Any]]) -> list[str]:
    """The marker objects of a step that already exist in the cluster and are not ours."""
    found = []
    for obj in objects:
        if obj["kind"] in MARKER_KINDS:
            live = cluster.get(obj)
            if live is not None and not is_ours(live):
                found.append(describe(obj))
    return found

"""Settings we change in upstream ConfigMaps (Knative's config-network, KServe's inferenceservice-config).

A patch may only set keys the upstream ConfigMap already has: a top-level data key, a key its
`_example` block documents (Knative's convention: defaults live commented in `_example`), or, with
`json_key`, a key of the JSON document stored under that data key (KServe's convention). A key the
release does not know is refused when rendering, so a renamed setting fails loudly instead of being
silently ignored by the controller.

The change is made on the upstream object itself (a second object of the same name would fight it
for the field on every apply); the result is a new object, the input is left as it was.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any

from mlops_cli.common.errors import PreflightError




@dataclass(frozen=True)
class ConfigMapPatch:
    namespace: str
    name: str
    values: dict[str, Any]
    json_key: str | None = None   # the data key holding a JSON document whose keys we set
    why: str = ""
    manifest: str = ""            # the charts.upstream manifest key that holds the ConfigMap

    def matches(self, obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        return obj.get("kind") == "ConfigMap" and meta.get("name") == self.name and meta.get("namespace") == self.namespace

    def apply(self, obj: dict[str, Any], source: str) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        data = out.setdefault("data", {})
        where = f"{source}: ConfigMap {self.namespace}/{self.name}"
        if self.json_key is None:
            unknown = [k for k in self.values if k not in data and not _documented(data.get("_example", ""), k)]
            if unknown:
                raise PreflightError(f"{where} has no setting {', '.join(unknown)}",
                                     hint="the release renamed or removed it: check its config docs and the pinned version")
            data.update({k: str(v) for k, v in self.values.items()})
            return out
        if self.json_key not in data:
            raise PreflightError(f"{where} has no data key {self.json_key!r}", hint="check the pinned release")
        try:
            document = json.loads(data[self.json_key])
        except json.JSONDecodeError as exc:
            raise PreflightError(f"{where}: {self.json_key} is not JSON: {exc}") from None
        unknown = [k for k in self.values if k not in document]
        if unknown:
            raise PreflightError(f"{where}: {self.json_key} has no key {', '.join(unknown)}",
                                 hint="the release renamed or removed it: check its config docs and the pinned version")
        document.update(self.values)
        data[self.json_key] = json.dumps(document, indent=2)
        return out


def _documented(example: str, key: str) -> bool:
    return re.search(rf"^\s*{re.escape(key)}\s*:", example, flags=re.MULTILINE) is not None


def apply_patches(objects: list[dict[str, Any]], patches: list[ConfigMapPatch], source: str) -> list[dict[str, Any]]:
    """objects with each patched ConfigMap replaced; a patch whose ConfigMap is missing is refused."""
    out = list(objects)
    for patch in patches:
        hits = [i for i, obj in enumerate(out) if patch.matches(obj)]
        if not hits:
            raise PreflightError(f"{source}: no ConfigMap {patch.namespace}/{patch.name} to configure",
                                 hint="is the manifest the release named by its [kubernetes] URL and version?")
        for i in hits:
            out[i] = patch.apply(out[i], source)
    return out

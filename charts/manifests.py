"""`mlops render`: the objects `up` (or `deploy`) would apply, as plain YAML files, with no cluster.

For GitOps (Argo CD, Flux) and review. The objects come from the same `platform_steps` and
`inference_service.render` that `up` and `deploy` apply, so what is rendered is what is applied.
One file per install step, numbered in install order, each ordered as it is applied (namespaces,
then CRDs, then the rest). Two things are deliberately not written as objects:

- Secrets: a rendered Secret would carry a value (or, applied by a GitOps tool, wipe the real one).
  `index.txt` lists each Secret to create (name, namespace, keys); no value is rendered anywhere.
- Upstream release manifests neither bundled ([kubernetes].offline_bundle) nor cached: nothing is
  downloaded; `index.txt` lists each (URL, version, sha256 pin, the ConfigMap settings we change).

Example::

    rendered = platform(cfg)
    write(rendered, Path("out"))      # out/00-namespace.yaml ... out/index.txt
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_cli.config.settings import Config

FIRST_KINDS = ("Namespace", "CustomResourceDefinition")
# The index is YAML but not named .yaml: `kubectl apply -f DIR/` reads every .json, .yaml and .yml file in
# DIR as manifests (k8s.io/cli-runtime pkg/resource/visitor.go, ignoreFile; builder.go FileExtensions), and
# Argo CD's directory sources the same, so an index.yaml failed the whole apply with "Kind is missing".
INDEX = "index.txt"


@dataclass
class Rendered:
    files: dict[str, list[dict[str, Any]]] = field(default_factory=dict)   # file name -> objects, in order
    upstream: list[dict[str, Any]] = field(default_factory=list)           # manifests not included
    secrets: list[dict[str, Any]] = field(default_factory=list)            # Secrets to create yourself

    def index(self) -> dict[str, Any]:
        return {"files": list(self.files), "upstream_not_included": self.upstream, "secrets_to_create": self.secrets}


def ordered(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rank = {kind: i for i, kind in enumerate(FIRST_KINDS)}
    return sorted(objects, key=lambda o: rank.get(o["kind"], len(FIRST_KINDS)))


def platform(config: Config) -> Rendered:
    from . import upstream
    from .platform import platform_steps

    out = Rendered()
    for i, step in enumerate(platform_steps(config, None, missing_ok=True)):
        _add(out, f"{i:02d}-{step.key}.yaml", step.objects)
        for key in step.upstream:
            if upstream.local_file(config, key) is None:
                p = upstream.pin(config, key)
                out.upstream.append({
                    "step": step.title, "manifest": key, "version": p.version, "url": p.url,
                    "sha256": p.sha256 or f"not pinned: compute with `{upstream.pin_command(p)}`, check, set [kubernetes].{p.sha_field}",
                    "configmap_changes": [{"configmap": f"{c.namespace}/{c.name}", **({"json_key": c.json_key} if c.json_key else {}),
                                           "set": dict(c.values), "why": c.why} for c in step.patches if c.manifest == key],
                })
    return out


def deployment(config: Config, *, version: str, artifact_uri: str, canary: int | None = None,
               served_uri: str | None = None) -> Rendered:
    """What `mlops deploy --version N` applies: the InferenceService (artifact_uri: the version's
    artifact location, `registry.resolve_version(...).location`; served_uri: what its predictor serves,
    `serving_runtime.served_artifact_uri`)."""
    from .inference_service import render

    out = Rendered()
    _add(out, "10-inference-service.yaml", [render(config, version=version, source_uri=artifact_uri, canary=canary,
                                                   served_uri=served_uri)])
    return out


def _add(out: Rendered, name: str, objects: list[dict[str, Any]]) -> None:
    kept = []
    for obj in ordered(objects):
        if obj["kind"] == "Secret":
            meta = obj["metadata"]
            from .secrets import SECRET_KEYS

            keys = sorted(set(obj.get("stringData") or {}) | set(obj.get("data") or {}) | set(SECRET_KEYS.get(meta["name"], ())))
            out.secrets.append({"name": meta["name"], "namespace": meta.get("namespace", ""), "keys": keys})
        else:
            kept.append(obj)
    if kept:
        out.files[name] = kept


def as_yaml(objects: list[dict[str, Any]]) -> str:
    import yaml

    # libyaml's emitter where PyYAML was built with it: the same documents, 3x faster on KServe's 7 MB release
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump_all(objects, Dumper=dumper, sort_keys=False, explicit_start=True)


def write(rendered: Rendered, directory: Path) -> list[Path]:
    """Every file written whole: an interrupted render never leaves half a file."""
    import yaml

    from mlops_cli.common.atomic_file import write_atomically

    directory.mkdir(parents=True, exist_ok=True)
    contents = {name: as_yaml(objs) for name, objs in rendered.files.items()}
    contents[INDEX] = yaml.safe_dump(rendered.index(), sort_keys=False)
    for name, text in contents.items():
        write_atomically(directory / name, text)
    return [directory / name for name in contents]

"""The offline bundle `mlops up --target kubernetes` installs from in the tests (`[kubernetes].offline_bundle`):
the real upstream release files of tests/upstream_files.py, written to a directory with the sha256 pins that
match them, and the `[kubernetes]` section that names it. Used by the emulator's tests and the real
control plane's alike, so it lives apart from both."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from tests.upstream_files import documents, release_manifest

# Every bundle key (charts.upstream.MANIFESTS): the real file tests/upstream_files.py provides (its SOURCES
# say where each comes from), never a hand-written stand-in.
REAL = ("cert-manager", "knative-crds", "knative-core", "kourier", "kserve", "kserve-runtimes", "envoy-gateway")


def bundle_documents() -> dict[str, list[dict[str, Any]]]:
    return {key: documents(text.encode()) for key, text in _bundle_texts()}


@functools.lru_cache(maxsize=1)
def _bundle_texts() -> tuple[tuple[str, str], ...]:
    """Read once per session: the bundle is the same for every test."""
    return tuple((key, release_manifest(key).decode()) for key in REAL)


def build_bundle(directory: Path) -> dict[str, str]:
    """Writes the bundle; returns the `[kubernetes]` sha256 pins that match it."""
    from charts.upstream import bundle_pins

    directory.mkdir(parents=True, exist_ok=True)
    for key, text in _bundle_texts():
        (directory / f"{key}.yaml").write_text(text)
    return bundle_pins(directory)


def kubernetes_toml(bundle: Path, pins: dict[str, str], kubeconfig: Path | None = None, **extra: Any) -> str:
    lines = ["[kubernetes]", f'offline_bundle = "{bundle}"']
    if kubeconfig is not None:
        lines.append(f'kubeconfig = "{kubeconfig}"')
    lines += [f'{k} = "{v}"' for k, v in pins.items()]
    lines += [f"{k} = {_toml(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f'"{k}" = {_toml(v)}' for k, v in value.items()) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)

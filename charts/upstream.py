"""Upstream release manifests (cert-manager, Knative, Kourier, KServe, Envoy Gateway), pinned by sha256.

Each manifest is read from the offline bundle when `[kubernetes].offline_bundle` is set (air-gapped
clusters: `<bundle>/<key>.yaml`), else from the cache `<manifest_cache>/<key>/<version>.yaml`, else
downloaded once into that cache. Every file, wherever it came from, must match its configured pin.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_cli.common.atomic_file import write_atomically
from mlops_cli.common.errors import ConfigError, PreflightError, UnreachableError
from mlops_cli.config.settings import Config

# key -> (version field, url field, sha256 field) in [kubernetes]
MANIFESTS: dict[str, tuple[str, str, str]] = {
    "cert-manager": ("cert_manager_version", "cert_manager_url", "cert_manager_sha256"),
    "knative-crds": ("knative_version", "knative_crds_url", "knative_crds_sha256"),
    "knative-core": ("knative_version", "knative_core_url", "knative_core_sha256"),
    "kourier": ("kourier_version", "kourier_url", "kourier_sha256"),
    "kserve": ("kserve_version", "kserve_url", "kserve_sha256"),
    "kserve-runtimes": ("kserve_version", "kserve_runtimes_url", "kserve_runtimes_sha256"),
    "envoy-gateway": ("envoy_gateway_version", "envoy_gateway_url", "envoy_gateway_sha256"),
}


@dataclass(frozen=True)
class Pin:
    key: str
    version: str
    url: str
    sha256: str
    sha_field: str


def pin(config: Config, key: str) -> Pin:
    version_f, url_f, sha_f = MANIFESTS[key]
    k = config.kubernetes
    version = getattr(k, version_f)
    return Pin(key, version, getattr(k, url_f).format(version=version), getattr(k, sha_f).lower(), sha_f)


def load(config: Config, key: str, *, missing_ok: bool = False) -> list[dict[str, Any]]:
    """The objects of one upstream manifest, verified against its pin.

    missing_ok (`mlops render`): a manifest neither bundled nor cached is not downloaded; [] instead,
    and `render` lists it (URL, version, pin) for the reader to apply."""
    if missing_ok and local_file(config, key) is None:
        return []
    return parse_manifest(manifest_bytes(config, key), source=key)


def local_file(config: Config, key: str) -> Path | None:
    """The bundled or cached copy of a manifest, if there is one (nothing is downloaded)."""
    p = pin(config, key)
    bundle = config.kubernetes.offline_bundle
    path = config.path(bundle) / f"{key}.yaml" if bundle else config.path(config.kubernetes.manifest_cache) / key / f"{p.version}.yaml"
    return path if path.is_file() else None


def pin_command(p: "Pin") -> str:
    """The exact shell command that computes a manifest's pin (run it, check the file, then set the pin)."""
    return f"curl -fsSL {p.url} | sha256sum"


def manifest_bytes(config: Config, key: str) -> bytes:
    p = pin(config, key)
    bundle = config.kubernetes.offline_bundle
    if bundle:
        path = config.path(bundle) / f"{key}.yaml"
        if not path.is_file():
            raise PreflightError(f"offline bundle has no {path.name}: {path}",
                                 hint=f"put the {key} release manifest ({p.url}) there, or unset [kubernetes].offline_bundle")
        return _verified(path.read_bytes(), p, str(path))
    cached = config.path(config.kubernetes.manifest_cache) / key / f"{p.version}.yaml"
    if cached.is_file():
        return _verified(cached.read_bytes(), p, str(cached))
    data = _download(p)
    _verified(data, p, p.url)
    write_atomically(cached, data)  # an interrupted download never leaves a half file in the cache
    return data


def verify_all(config: Config) -> None:
    """Fetch and check every manifest before anything is applied; all missing pins in one message."""
    unpinned = []
    for key in MANIFESTS:
        try:
            manifest_bytes(config, key)
        except UnpinnedError as exc:
            unpinned.append(exc.line)
    if unpinned:
        commands = "\n  ".join(pin_command(pin(config, key)) for key in MANIFESTS if not getattr(config.kubernetes, MANIFESTS[key][2]))
        raise ConfigError(
            "upstream manifests are not pinned; their files have these sha256:\n  " + "\n  ".join(unpinned),
            hint="check those files (they are the releases named by the URLs; compute each pin yourself with\n  "
                 + commands + "\n), then add the lines above to [kubernetes] in mlops.toml",
        )


class UnpinnedError(ConfigError):
    def __init__(self, message: str, hint: str, line: str) -> None:
        super().__init__(message, hint=hint)
        self.line = line


def _verified(data: bytes, p: Pin, where: str) -> bytes:
    actual = hashlib.sha256(data).hexdigest()
    if not p.sha256:
        raise UnpinnedError(
            f"[kubernetes].{p.sha_field} is empty: {p.key} {p.version} is not pinned (its file {where} has sha256 {actual})",
            hint=f"compute it yourself with `{pin_command(p)}`, check the file, then set {p.sha_field} = \"{actual}\" "
                 "in [kubernetes] of mlops.toml",
            line=f'{p.sha_field} = "{actual}"  # {p.key} {p.version}',
        )
    if actual != p.sha256:
        raise PreflightError(
            f"{p.key} {p.version}: sha256 of {where} is {actual}, but [kubernetes].{p.sha_field} pins {p.sha256}",
            hint="the file changed or is the wrong version: delete it and re-run, or fix the pin after checking the release",
        )
    return data


def _download(p: Pin) -> bytes:
    import httpx

    try:
        response = httpx.get(p.url, follow_redirects=True, timeout=60)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise UnreachableError(f"cannot download {p.key} {p.version} from {p.url}: {exc}",
                             hint="check the network, or set [kubernetes].offline_bundle to a directory with the manifests") from None
    return response.content


def parse_manifest(data: bytes, source: str) -> list[dict[str, Any]]:
    import yaml

    # libyaml's loader where PyYAML was built with it: the same safe schema, ~10x faster on release
    # manifests of megabytes (KServe's CRDs are 2.3 MB).
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        docs = list(yaml.load_all(data, Loader=loader))
    except yaml.YAMLError as exc:
        raise PreflightError(f"{source}: not valid YAML: {exc}") from None
    objects: list[dict[str, Any]] = []
    for doc in docs:
        if not doc:
            continue
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise PreflightError(f"{source}: a document is not a Kubernetes object: {str(doc)[:80]}")
        if doc["kind"].endswith("List") and "items" in doc:
            objects.extend(doc["items"])
        else:
            objects.append(doc)
    return objects


def bundle_pins(bundle: Path) -> dict[str, str]:
    """sha256 of every manifest in a bundle directory, as `[kubernetes]` field -> pin (for tests and docs)."""
    return {MANIFESTS[key][2]: hashlib.sha256((bundle / f"{key}.yaml").read_bytes()).hexdigest()
            for key in MANIFESTS if (bundle / f"{key}.yaml").is_file()}

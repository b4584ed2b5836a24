"""Upstream release manifests (cert-manager, Knative, Kourier, KServe, Envoy Gateway), pinned by sha256.

Each manifest is read from the offline bundle when `[kubernetes].offline_bundle` is set (air-gapped
clusters: `<bundle>/<key>.yaml`), else from the cache `<manifest_cache>/<key>/<version>.yaml`, else
downloaded once into that cache. Every file, wherever it came from, must match its pin: the explicit
`[kubernetes].*_sha256` when set, else its entry in mlops.lock (charts/manifest_lock.py), which the first
`up` (or `mlops lock`) records and `mlops lock --upgrade` rewrites.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_cli.common.atomic_file import write_atomically
from mlops_cli.common.errors import ConfigError, MlopsError, PreflightError, UnreachableError
from mlops_cli.config.settings import Config

from . import manifest_lock

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


def cache_path(config: Config, p: Pin) -> Path:
    return config.path(config.kubernetes.manifest_cache) / p.key / f"{p.version}.yaml"


def manifest_bytes(config: Config, key: str) -> bytes:
    """One manifest, checked against its pin ([kubernetes].*_sha256, else its mlops.lock entry).

    Records nothing: a manifest with no pin at all is refused here (`verify_all` and `mlops lock` record)."""
    p = pin(config, key)
    lock_file = manifest_lock.lock_path(config)
    expected, source = _expected(p, manifest_lock.read(lock_file).get(key), lock_file)
    data, where, downloaded = _read(config, p)
    actual = hashlib.sha256(data).hexdigest()
    if expected is None:
        raise UnpinnedError(
            f"[kubernetes].{p.sha_field} is empty and {lock_file.name} has no {p.key} entry: {p.key} {p.version} "
            f"is not pinned (its file {where} has sha256 {actual})",
            hint=f"run `mlops lock` (it records the sha256 in {lock_file}: check the release, then commit that file), "
                 f"or compute it yourself with `{pin_command(p)}` and set {p.sha_field} in [kubernetes] of mlops.toml",
            line=f'{p.sha_field} = "{actual}"  # {p.key} {p.version}',
        )
    if actual != expected:
        raise PreflightError(_changed_line(p, where, actual, expected, source), hint=_CHANGED_HINT)
    if downloaded:
        write_atomically(cache_path(config, p), data)  # an interrupted download never leaves a half file in the cache
    return data


@dataclass(frozen=True)
class LockResult:
    """What `verify_all` / `lock` did with one manifest: verified, recorded, upgraded or unchanged."""
    key: str
    version: str
    sha256: str
    action: str
    old_version: str | None = None
    old_sha256: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"manifest": self.key, "version": self.version, "sha256": self.sha256, "action": self.action,
                "old_version": self.old_version, "old_sha256": self.old_sha256}


def verify_all(config: Config) -> list[LockResult]:
    """Read and check every manifest before anything is applied; record the ones not yet pinned in
    mlops.lock (trust on first use, as `terraform init` does). Every missing, changed or unreadable
    manifest is listed in one error, and then nothing is recorded or cached."""
    return _lock(config, upgrade=False)


def lock(config: Config, *, upgrade: bool = False) -> list[LockResult]:
    """`mlops lock`: as `verify_all`. With `upgrade`, read every manifest afresh (the offline bundle, else
    a new download, never the cache) at the versions mlops.toml names and rewrite its entry: the one
    deliberate way to take a new version or a re-published file."""
    return _lock(config, upgrade=upgrade)


def _lock(config: Config, *, upgrade: bool) -> list[LockResult]:
    lock_file = manifest_lock.lock_path(config)
    entries = manifest_lock.read(lock_file)
    updated = dict(entries)
    results: list[LockResult] = []
    problems: list[tuple[str, bool]] = []   # (line, a download failed)
    to_cache: list[tuple[Path, bytes]] = []
    for key in MANIFESTS:
        p = pin(config, key)
        entry = entries.get(key)
        try:
            expected, source = (p.sha256 or None, f"[kubernetes].{p.sha_field}") if upgrade else _expected(p, entry, lock_file)
            data, where, downloaded = _read(config, p, fresh=upgrade)
        except MlopsError as exc:
            problems.append((f"{key}: {exc.message}", isinstance(exc, UnreachableError)))
            continue
        actual = hashlib.sha256(data).hexdigest()
        if expected is not None and actual != expected:
            problems.append((_changed_line(p, where, actual, expected, source), False))
            continue
        if downloaded:
            to_cache.append((cache_path(config, p), data))
        if upgrade:
            same = entry is not None and (entry.version, entry.url, entry.sha256) == (p.version, p.url, actual)
            if not same:
                updated[key] = manifest_lock.LockEntry(p.version, p.url, actual, manifest_lock.now())
            results.append(LockResult(key, p.version, actual, "unchanged" if same else "upgraded",
                                      entry.version if entry else None, entry.sha256 if entry else None))
        elif entry is None:
            updated[key] = manifest_lock.LockEntry(p.version, p.url, actual, manifest_lock.now())
            results.append(LockResult(key, p.version, actual, "recorded"))
        else:
            results.append(LockResult(key, p.version, actual, "verified"))
    if problems:
        lines = "\n  ".join(line for line, _ in problems)
        cls = UnreachableError if all(unreachable for _, unreachable in problems) else PreflightError
        raise cls(f"upstream manifests ({lock_file}): {len(problems)} of {len(MANIFESTS)} cannot be used; "
                  f"nothing was recorded:\n  {lines}", hint=_CHANGED_HINT + _UNREACHABLE_HINT)
    for path, data in to_cache:
        write_atomically(path, data)
    if updated != entries:
        manifest_lock.write(lock_file, updated)
    return results


_CHANGED_HINT = ("a changed file is a release re-published after it was recorded, or a bad cached or bundled copy: check "
                 "the release at its URL; to take it deliberately run `mlops lock --upgrade` and commit mlops.lock; "
                 "a bad cached copy: delete it and re-run")
_UNREACHABLE_HINT = ("; a download that failed: check the network, or set [kubernetes].offline_bundle to a directory "
                     "holding <manifest>.yaml for each")


def _expected(p: Pin, entry: "manifest_lock.LockEntry | None", lock_file: Path) -> tuple[str | None, str]:
    """The sha256 a manifest must have and who says so: an explicit pin in mlops.toml wins, but must agree
    with the lock; a lock entry counts only for the version and URL it was recorded for."""
    if entry is not None and (entry.version, entry.url) != (p.version, p.url):
        raise ConfigError(
            f"mlops.toml asks for {p.key} {p.version} ({p.url}), but {lock_file} records {entry.version} ({entry.url})",
            hint="take the new version deliberately with `mlops lock --upgrade` (then commit mlops.lock), "
                 f"or set the version back to {entry.version}")
    if p.sha256 and entry is not None and p.sha256 != entry.sha256:
        raise ConfigError(
            f"{p.key} {p.version}: [kubernetes].{p.sha_field} pins {p.sha256}, but {lock_file} records {entry.sha256}",
            hint="one of them is wrong: check the release file, then remove the pin from mlops.toml (the lock is "
                 "enough) or fix it; `mlops lock --upgrade` re-records the lock from the file")
    if p.sha256:
        return p.sha256, f"[kubernetes].{p.sha_field}"
    return (entry.sha256, str(lock_file)) if entry is not None else (None, "")


def _changed_line(p: Pin, where: str, actual: str, expected: str, source: str) -> str:
    return f"{p.key} {p.version}: sha256 of {where} is {actual}, but {source} pins {expected}"


def _read(config: Config, p: Pin, *, fresh: bool = False) -> tuple[bytes, str, bool]:
    """The manifest's bytes, where they came from, and whether they were downloaded (not yet cached)."""
    bundle = config.kubernetes.offline_bundle
    if bundle:
        path = config.path(bundle) / f"{p.key}.yaml"
        if not path.is_file():
            raise PreflightError(f"offline bundle has no {path.name}: {path}",
                                 hint=f"put the {p.key} release manifest ({p.url}) there, or unset [kubernetes].offline_bundle")
        return path.read_bytes(), str(path), False
    cached = cache_path(config, p)
    if cached.is_file() and not fresh:
        return cached.read_bytes(), str(cached), False
    return _download(p), p.url, True


class UnpinnedError(ConfigError):
    def __init__(self, message: str, hint: str, line: str) -> None:
        super().__init__(message, hint=hint)
        self.line = line


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

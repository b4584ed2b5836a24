"""mlops.lock: the sha256 of every upstream release manifest, recorded once and checked on every read.

What Terraform's `.terraform.lock.hcl` does for providers: the first `mlops up --target kubernetes` (or
`mlops lock`) that reads a manifest records its version, URL and sha256 in `mlops.lock` beside mlops.toml,
to be committed; every later read, downloaded, cached or from an offline bundle, must match that record.
A new version in mlops.toml is taken only deliberately, by `mlops lock --upgrade`. The file is TOML:

    [manifests.cert-manager]
    version = "v1.21.2"
    url = "https://github.com/cert-manager/cert-manager/releases/download/v1.21.2/cert-manager.yaml"
    sha256 = "4d6c..."
    recorded_at = "2026-12-06T15:40:00Z"

This module only reads and writes the file; charts/upstream.py decides what to check and record.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

from mlops_cli.common.atomic_file import write_atomically
from mlops_cli.common.errors import ConfigError
from mlops_cli.config.settings import Config

LOCK_NAME = "mlops.lock"
_HEADER = """\
# mlops.lock: the sha256 of each upstream release manifest, recorded by `mlops up --target kubernetes`
# or `mlops lock`, and checked on every later read (download, cache, offline bundle). Commit it.
# Do not edit by hand: `mlops lock --upgrade` records the versions mlops.toml names.
"""


@dataclass(frozen=True)
class LockEntry:
    version: str
    url: str
    sha256: str
    recorded_at: str


def lock_path(config: Config) -> Path:
    """Beside mlops.toml (the project directory when there is none)."""
    return config.file.parent / LOCK_NAME if config.file is not None else config.root / LOCK_NAME


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def read(path: Path) -> dict[str, LockEntry]:
    """The entries of a lock file by manifest key; {} when there is no file yet."""
    if not path.is_file():
        return {}
    fix = f"restore it from version control (git checkout -- {path.name}), or delete it and run `mlops lock`"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not a valid lock file: {exc}", hint=fix) from None
    entries: dict[str, LockEntry] = {}
    for key, entry in (data.get("manifests") or {}).items():
        fields = set(LockEntry.__dataclass_fields__)
        if not isinstance(entry, dict) or set(entry) != fields or not all(isinstance(v, str) for v in entry.values()):
            raise ConfigError(f"{path}: [manifests.{key}] must hold exactly {', '.join(sorted(fields))} (strings)", hint=fix)
        entries[key] = LockEntry(**entry)
    return entries


def write(path: Path, entries: Mapping[str, LockEntry]) -> None:
    """The whole file at once (atomically): a reader never sees half of it."""
    lines = [_HEADER]
    for key in sorted(entries):
        e = entries[key]
        # JSON strings are TOML basic strings for the ASCII of versions, URLs and hex digests.
        lines += ["", f"[manifests.{key}]", f"version = {json.dumps(e.version)}", f"url = {json.dumps(e.url)}",
                  f"sha256 = {json.dumps(e.sha256)}", f"recorded_at = {json.dumps(e.recorded_at)}"]
    write_atomically(path, "\n".join(lines) + "\n")

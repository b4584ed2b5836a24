"""Loading the configuration: find ``mlops.toml`` (or take ``--config`` / ``MLOPS_CONFIG``), read it, lay
``MLOPS_<SECTION>__<KEY>`` environment values over it, validate once, and record where each key came from.

Example::

    cfg = load_config()                       # finds ./mlops.toml (or a parent's)
    cfg = load_config(overrides={"train.epochs": 5})
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Mapping

from ..common.errors import ConfigError
from .settings import ENV_PREFIX, Config, flatten, set_dotted, validate_config

CONFIG_FILENAME = "mlops.toml"


def find_config_file(start: Path | None = None) -> Path | None:
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / CONFIG_FILENAME
        if candidate.is_file():
            return candidate
    return None


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    env = os.environ if env is None else env
    explicit = path or env.get("MLOPS_CONFIG")
    if explicit:
        file = Path(explicit).expanduser()
        if not file.is_file():
            raise ConfigError(
                f"config file not found: {file}",
                hint="pass an existing file with --config, or unset MLOPS_CONFIG",
            )
    else:
        file = find_config_file()

    data: dict[str, Any] = {}
    sources: dict[str, str] = {}
    env_keys: set[str] = set()
    if file is not None:
        data = _read_toml(file)
        sources.update({k: f"file:{file}" for k in flatten(data)})

    for dotted, raw in _env_overrides(env).items():
        set_dotted(data, dotted, _parse_env_value(raw))
        sources[dotted] = f"env:{ENV_PREFIX}{dotted.replace('.', '__').upper()}"
        env_keys.add(dotted)

    cfg = validate_config(data, origin=str(file) if file else "defaults", env_keys=env_keys)
    cfg._root = (file.parent if file else Path.cwd()).resolve()
    cfg._file = file.resolve() if file else None
    cfg._sources = sources
    return cfg.with_overrides(overrides or {})


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        with file.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: invalid TOML: {exc}", hint="fix the syntax at that line") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not valid UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None


def _env_overrides(env: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX):].partition("__")
        if section and key:
            out[f"{section.lower()}.{key.lower()}"] = value
    return out


def _parse_env_value(raw: str) -> Any:
    # Lists come as JSON (MLOPS_EKS__INSTANCE_TYPES='["m6i.large"]'); everything else is left for
    # pydantic's lax coercion ("5" -> 5, "true" -> True).
    stripped = raw.strip()
    if stripped.startswith("["):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return raw
    return raw

"""The one typed configuration every command shares: `Config`, all sections together with the rules across
them, where relative paths resolve, which layer set each key, and flag values applied on top.

Precedence, lowest first: built-in defaults < ``mlops.toml`` (or ``--config`` / ``MLOPS_CONFIG``)
< environment (``MLOPS_<SECTION>__<KEY>``) < command-line flags. Reading the file and the environment
is loading.py's; the sections are sections.py's and cluster_sections.py's.

Secrets never live here: they come from the environment only (see ``common/secrets.py``).

Example::

    cfg = load_config()                       # finds ./mlops.toml (or a parent's)
    cfg = load_config(overrides={"train.epochs": 5})
    cfg.train.epochs, cfg.source("train.epochs")   # -> 5, "flag"
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from pydantic import PrivateAttr, ValidationError, model_validator

from ..common.errors import ConfigError
from .cluster_sections import EksConfig, KubernetesConfig
from .sections import (CanaryConfig, DataConfig, DriftConfig, FeedbackConfig, GatewayConfig, ImagesConfig, LocalConfig, LoopConfig,
                       ObservabilityConfig, ProjectConfig, RegistryConfig, ServingConfig, TrainConfig)
from .values import Section

ENV_PREFIX = "MLOPS_"


class Config(Section):
    project: ProjectConfig = ProjectConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    registry: RegistryConfig = RegistryConfig()
    serving: ServingConfig = ServingConfig()
    gateway: GatewayConfig = GatewayConfig()
    drift: DriftConfig = DriftConfig()
    feedback: FeedbackConfig = FeedbackConfig()
    loop: LoopConfig = LoopConfig()
    observability: ObservabilityConfig = ObservabilityConfig()
    local: LocalConfig = LocalConfig()
    kubernetes: KubernetesConfig = KubernetesConfig()
    images: ImagesConfig = ImagesConfig()
    eks: EksConfig = EksConfig()
    canary: CanaryConfig = CanaryConfig()

    @model_validator(mode="after")
    def _calls_fit_the_queue(self) -> "Config":
        # The predictor admits a call only if all its texts fit its queue: a call it can never admit
        # would turn every coalesced burst into 503s.
        if self.gateway.texts_per_call > self.serving.max_queue:
            raise ValueError(f"[gateway].texts_per_call ({self.gateway.texts_per_call}) is more than "
                             f"[serving].max_queue ({self.serving.max_queue}): the predictor would refuse every "
                             "full coalesced call; lower texts_per_call or raise max_queue")
        return self

    _root: Path = PrivateAttr(default_factory=Path.cwd)
    _file: Path | None = PrivateAttr(default=None)
    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def root(self) -> Path:
        """The project directory: where mlops.toml lives; relative paths resolve against it."""
        return self._root

    @property
    def file(self) -> Path | None:
        return self._file

    def path(self, value: str | os.PathLike[str]) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self._root / p

    @property
    def state_dir(self) -> Path:
        return self.path(self.project.state_dir)

    def source(self, dotted: str) -> str:
        return self._sources.get(dotted, "default")

    def sources(self) -> dict[str, str]:
        return {key: self.source(key) for key in flatten(self.model_dump())}

    def with_overrides(self, overrides: Mapping[str, Any]) -> "Config":
        """A copy with flag values applied (None means 'flag not given')."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if not given:
            return self
        data = self.model_dump()
        for dotted, value in given.items():
            set_dotted(data, dotted, value)
        new = validate_config(data, origin="command-line flags")
        new._root, new._file = self._root, self._file
        new._sources = {**self._sources, **{k: "flag" for k in given}}
        return new


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    section, _, key = dotted.partition(".")
    target = data.setdefault(section, {})
    if not isinstance(target, dict):
        raise ConfigError(f"[{section}] must be a table, got {target!r}")
    target[key] = value


def validate_config(data: dict[str, Any], *, origin: str, env_keys: set[str] | None = None) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin, env_keys or set())) from None


def _describe(exc: ValidationError, origin: str, env_keys: set[str]) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"])
        # An unknown section from the environment (MLOPS_TRIAN__EPOCHS) fails at `trian`, not at the key.
        from_env = sorted(k for k in env_keys if k == field or k.startswith(f"{field}."))
        where = ", ".join(f"env {_env_name(k)}" for k in from_env) if from_env else origin
        if err["type"] == "extra_forbidden":
            what = "key" if "." in field else "section"
            lines.append(f"{where}: unknown {what} `{field}` (check the spelling; `mlops config show` lists every key)")
        elif not field:  # a rule across sections: its message names the keys
            lines.append(f"{where}: {_message(err)}")
        else:
            lines.append(f"{where}: `{field}` = {err.get('input')!r}: {_message(err)}")
    return "invalid configuration\n  " + "\n  ".join(lines)


def _env_name(dotted: str) -> str:
    return f"{ENV_PREFIX}{dotted.replace('.', '__').upper()}"


def _message(err: Any) -> str:
    """Our validators' messages as written ("expected an MLflow tracking URI"); pydantic's own start
    lower-case to read on after the colon ("input should be a valid integer")."""
    if err["type"] == "value_error":
        return err["msg"].removeprefix("Value error, ")
    return err["msg"][:1].lower() + err["msg"][1:]

"""Global options shared by every command (the values of --config, --json, -v, -q)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import typer

if TYPE_CHECKING:
    from ..config.settings import Config


@dataclass
class AppState:
    config_path: str | None = None
    json: bool = False
    verbose: int = 0
    quiet: bool = False
    _config: "Config | None" = field(default=None, repr=False)

    def config(self, overrides: Mapping[str, Any] | None = None) -> "Config":
        from ..config.loading import load_config

        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config.with_overrides(overrides or {})

    def project_config(self, command: str, why: str) -> "Config":
        """The config of a project, or one message saying there is none: outside a project the defaults
        would aim `predict` at port 8080 (maybe someone else's service) and create .mlops/ wherever it ran.
        `why`: what the command takes from the project."""
        from ..common.errors import ConfigError
        from ..config.loading import CONFIG_FILENAME

        config = self.config()
        if config.file is None:
            raise ConfigError(f"no {CONFIG_FILENAME} in {config.root} or any parent directory: `mlops {command}` {why}",
                              hint=f"run it in your project directory, pass --config PATH, or create {CONFIG_FILENAME} "
                                   "here (`[project]` and a `name` are enough)")
        return config


def state(ctx: typer.Context) -> AppState:
    root = ctx.find_root()
    if not isinstance(root.obj, AppState):
        root.obj = AppState()
    return root.obj

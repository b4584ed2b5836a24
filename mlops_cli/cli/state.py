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


def state(ctx: typer.Context) -> AppState:
    root = ctx.find_root()
    if not isinstance(root.obj, AppState):
        root.obj = AppState()
    return root.obj

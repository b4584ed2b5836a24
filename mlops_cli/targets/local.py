"""The `local` target: the whole platform as supervised processes on loopback."""

from __future__ import annotations

from ..core.config import Config


class LocalTarget:
    name = "local"

    def __init__(self, config: Config) -> None:
        self.config = config

    def checks(self) -> list:
        return []

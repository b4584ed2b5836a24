"""How core code reports long work without knowing about terminals.

The CLI passes a Reporter that draws rich progress bars; tests and services pass the silent default.
"""

from __future__ import annotations

from typing import Any, Sequence


class Reporter:
    """No-op base. Override what you want to show."""

    def start(self, key: str, description: str, total: float | None = None) -> None: ...

    def advance(self, key: str, amount: float = 1, **fields: Any) -> None: ...

    def update(self, key: str, **fields: Any) -> None: ...

    def finish(self, key: str, message: str = "") -> None: ...

    def info(self, message: str) -> None: ...

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """A table the user should see before deciding something (e.g. a plan before a confirmation)."""

    def warn(self, message: str) -> None: ...


SILENT = Reporter()

"""Terminal output: rich tables and progress on stderr, machine JSON on stdout."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Iterable, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..core.progress import Reporter

_no_color = bool(os.environ.get("NO_COLOR"))
# Piped output (scripts, CI logs) gets wide tables instead of rich's 80-column default.
out = Console(no_color=_no_color, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, no_color=_no_color)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold")
    for col in columns:
        t.add_column(col)
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    return t


def show(renderable: Any) -> None:
    out.print(renderable)


def error(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def success(message: str) -> None:
    err.print(f"[green]✓[/] {message}", highlight=False)


def note(message: str) -> None:
    err.print(message, highlight=False)


def ok_mark(flag: bool) -> str:
    return "[green]OK[/]" if flag else "[red]FAIL[/]"


class RichReporter(Reporter):
    """Live progress bars on stderr; silent in --quiet or --json mode."""

    def __init__(self, enabled: bool = True) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.enabled = enabled
        self._tasks: dict[str, Any] = {}
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=not enabled,
            transient=False,
        )

    def __enter__(self) -> "RichReporter":
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def start(self, key: str, description: str, total: float | None = None) -> None:
        self._tasks[key] = self._progress.add_task(description, total=total, info="")

    def advance(self, key: str, amount: float = 1, **fields: Any) -> None:
        if key in self._tasks:
            self._progress.update(self._tasks[key], advance=amount, info=_fields(fields))

    def update(self, key: str, **fields: Any) -> None:
        if key in self._tasks:
            extra = {k: fields.pop(k) for k in ("total", "completed", "description") if k in fields}
            self._progress.update(self._tasks[key], info=_fields(fields), **extra)

    def finish(self, key: str, message: str = "") -> None:
        if key in self._tasks:
            self._progress.update(self._tasks[key], info=message, completed=self._total(key))
            self._progress.stop_task(self._tasks[key])

    def _total(self, key: str) -> float:
        for t in self._progress.tasks:
            if t.id == self._tasks[key]:
                return t.total if t.total is not None else t.completed
        return 0

    def info(self, message: str) -> None:
        if self.enabled:
            self._progress.console.print(message, highlight=False)

    def warn(self, message: str) -> None:
        self._progress.console.print(f"[yellow]warning:[/] {message}", highlight=False)

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if self.enabled:
            self._progress.console.print(table(title, columns, rows))


def _fields(fields: dict[str, Any]) -> str:
    parts = []
    for k, v in fields.items():
        parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)


def confirm(question: str, *, expect: str | None = None) -> bool:
    """Ask on the terminal; with no terminal, the answer is no (use --yes in scripts)."""
    if not sys.stdin or not sys.stdin.isatty():
        return False
    if expect is not None:
        answer = err.input(f"{question} Type [bold]{expect}[/] to confirm: ")
        return answer.strip() == expect
    answer = err.input(f"{question} [y/N] ")
    return answer.strip().lower() in {"y", "yes"}

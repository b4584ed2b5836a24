"""Terminal output: rich tables and progress on stderr, machine JSON on stdout."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any, Iterable, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..common.progress import Reporter

_no_color = bool(os.environ.get("NO_COLOR"))
# Piped output (scripts, CI logs) gets wide tables instead of rich's 80-column default; messages are
# never hard-wrapped (soft_wrap), so a URL or a path stays whole on one line in a log.
out = Console(no_color=_no_color, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, no_color=_no_color, width=None if sys.stderr.isatty() else 160)

# -q/--quiet: only errors, warnings and results; the notes and check marks around them are left out.
# Set by the app's callback for every invocation.
quiet = False


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def count(n: int, noun: str) -> str:
    """'1 prediction', '2 predictions' (regular plurals only)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def styled(text: Any, style: str) -> Text:
    """A cell or message part in a style; its text is shown as is, never read as markup."""
    return Text(str(text), style=style)


def _plain(value: Any) -> Text:
    # Values are data (config keys like `[kubeconfig]`, file names, log text): never rich markup.
    return value if isinstance(value, Text) else Text("" if value is None else str(value))


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    t = Table(title=None if title is None else Text(title), title_justify="left", header_style="bold")
    for col in columns:
        # A header is never cut to "compo…" on a narrow terminal: cells wrap instead.
        t.add_column(col, min_width=len(col))
    for row in rows:
        t.add_row(*(_plain(v) for v in row))
    return t


def show(renderable: Any) -> None:
    out.print(renderable)


def text_block(heading: str, text: str) -> None:
    """A heading, then text exactly as it is (log lines: no wrapping, no markup read into them)."""
    out.print(f"\n{escape(heading)}", highlight=False, soft_wrap=True)
    out.print(text, highlight=False, soft_wrap=True, markup=False, emoji=False)


def error(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def error_object(exc: BaseException, exit_code: int) -> dict[str, Any]:
    """What --json prints on stdout when a command fails (the message goes to stderr as well)."""
    return {"ok": False, "error": {"type": type(exc).__name__, "message": getattr(exc, "message", None) or str(exc),
                                   "hint": getattr(exc, "hint", None), "exit_code": exit_code}}


def _check_mark() -> str:
    """✓ where the console can show it; an ASCII stream (LANG=C, PYTHONIOENCODING=ascii) would print
    its escape, `\\u2713`."""
    try:
        "✓".encode(getattr(err.file, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return "OK"
    return "✓"


def success(message: str, *, result: bool = False) -> None:
    if result or not quiet:
        err.print(Text.assemble((_check_mark(), "green"), " ", message), highlight=False, soft_wrap=True)


def note(message: str, *, lead: str | None = None, style: str | None = None, result: bool = False) -> None:
    """A message on stderr, shown as written; `lead` is a styled first word ("no verdict:"). Left out
    under --quiet unless it is the command's `result` (drift's verdict)."""
    if quiet and not result:
        return
    text = Text.assemble((lead, style or ""), " ", message) if lead else Text(message, style=style or "")
    err.print(text, highlight=False, soft_wrap=True)


def ok_mark(flag: bool) -> Text:
    return styled("OK", "green") if flag else styled("FAIL", "red")


# How often a plain progress line is written when stderr is not a terminal (CI logs, `2> file`).
PROGRESS_INTERVAL_S = 10.0


class RichReporter(Reporter):
    """Live progress bars on stderr; silent in --quiet or --json mode.

    Where stderr is not a terminal a live bar draws nothing until the end, so a PlainReporter takes its
    place: every command that reports progress gets plain periodic lines there without asking.
    """

    def __new__(cls, enabled: bool = True) -> "Reporter":
        if cls is RichReporter and not err.is_terminal:
            return PlainReporter(enabled)
        return super().__new__(cls)

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
        self._tasks[key] = self._progress.add_task(escape(description), total=total, info="")

    def advance(self, key: str, amount: float = 1, **fields: Any) -> None:
        if key in self._tasks:
            self._progress.update(self._tasks[key], advance=amount, info=escape(_fields(fields)))

    def update(self, key: str, **fields: Any) -> None:
        if key in self._tasks:
            extra = {k: fields.pop(k) for k in ("total", "completed", "description") if k in fields}
            if "description" in extra:
                extra["description"] = escape(extra["description"])
            self._progress.update(self._tasks[key], info=escape(_fields(fields)), **extra)

    def finish(self, key: str, message: str = "") -> None:
        if key in self._tasks:
            self._progress.update(self._tasks[key], info=escape(message), completed=self._total(key))
            self._progress.stop_task(self._tasks[key])

    def _total(self, key: str) -> float:
        for t in self._progress.tasks:
            if t.id == self._tasks[key]:
                return t.total if t.total is not None else t.completed
        return 0

    def info(self, message: str) -> None:
        if self.enabled:
            self._progress.console.print(Text(message), highlight=False, soft_wrap=True)

    def warn(self, message: str) -> None:
        self._progress.console.print(Text.assemble(("warning:", "yellow"), " ", message), highlight=False,
                                     soft_wrap=True)

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if self.enabled:
            self._progress.console.print(table(title, columns, rows))


class PlainReporter(Reporter):
    """Progress as plain lines on stderr, for logs: when a task starts, every PROGRESS_INTERVAL_S while
    it runs (from a timer, so a step that takes minutes still shows the process is alive), and when it
    ends. Example line: ``scoring in.csv: 4000/20000 (20%) rows=4000, 1m05s elapsed, ~4m20s left``."""

    def __init__(self, enabled: bool = True, interval_s: float | None = None) -> None:
        self.enabled = enabled
        self.interval_s = PROGRESS_INTERVAL_S if interval_s is None else interval_s
        self._tasks: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> "PlainReporter":
        if self.enabled:
            self._ticker = threading.Thread(target=self._tick, name="plain-progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)

    def _tick(self) -> None:
        while not self._stop.wait(self.interval_s):
            with self._lock:
                lines = [self._line(task) for task in self._tasks.values()]
            for line in lines:
                self._write(line)

    def _write(self, line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    @staticmethod
    def _line(task: dict[str, Any]) -> str:
        elapsed = time.monotonic() - task["started"]
        done, total = task["completed"], task["total"]
        parts = [f"{task['description']}: {done:g}/{total:g} ({100 * done / total:.0f}%)" if total
                 else f"{task['description']}: {done:g} done" if done else f"{task['description']}: working"]
        if task["info"]:
            parts.append(task["info"])
        timing = f"{_duration(elapsed)} elapsed"
        if total and 0 < done < total:
            timing += f", ~{_duration(elapsed * (total - done) / done)} left"
        return " ".join(parts) + ", " + timing

    def start(self, key: str, description: str, total: float | None = None) -> None:
        task = {"description": description, "total": total, "completed": 0, "info": "", "started": time.monotonic()}
        with self._lock:
            self._tasks[key] = task
        if self.enabled:
            self._write(f"{description}: started" + (f" ({total:g} to do)" if total else ""))

    def advance(self, key: str, amount: float = 1, **fields: Any) -> None:
        with self._lock:
            if key in self._tasks:
                self._tasks[key]["completed"] += amount
                self._tasks[key]["info"] = _fields(fields)

    def update(self, key: str, **fields: Any) -> None:
        with self._lock:
            task = self._tasks.get(key)
            if task is not None:
                task.update({k: fields.pop(k) for k in ("total", "completed", "description") if k in fields})
                task["info"] = _fields(fields)

    def finish(self, key: str, message: str = "") -> None:
        with self._lock:
            task = self._tasks.pop(key, None)
        if task is not None and self.enabled:
            elapsed = _duration(time.monotonic() - task["started"])
            self._write(f"{task['description']}: done{': ' + message if message else ''} ({elapsed})")

    def info(self, message: str) -> None:
        if self.enabled:
            self._write(message)

    def warn(self, message: str) -> None:
        self._write(f"warning: {message}")

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if self.enabled:
            err.print(table(title, columns, rows))


def _duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{seconds:.1f}s"


def _fields(fields: dict[str, Any]) -> str:
    parts = []
    for k, v in fields.items():
        parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)


def confirm(question: str, *, expect: str | None = None) -> bool:
    """Ask on the terminal. With no terminal nothing can be asked: a usage error (exit 2) that says to
    pass --yes, rather than a "cancelled" nobody chose."""
    if not sys.stdin or not sys.stdin.isatty():
        from ..common.errors import UsageError

        raise UsageError(f"this needs a confirmation and there is no terminal to ask on (stdin is not a TTY); nothing "
                         f"was changed. The question: {question}", hint="pass --yes to confirm in a script")
    if expect is not None:
        answer = err.input(f"{escape(question)} Type [bold]{escape(expect)}[/] to confirm: ")
        return answer.strip() == expect
    answer = err.input(f"{escape(question)} \\[y/N] ")
    return answer.strip().lower() in {"y", "yes"}

"""`mlops doctor`: one table of preflight checks."""

from __future__ import annotations

import typer

from .state import state


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)


def doctor(ctx: typer.Context) -> None:
    """Check everything the configured target needs, each with OK or the exact fix.

    Exits non-zero when a check the current target needs fails.

    Examples:

      mlops doctor

      MLOPS_PROJECT__TARGET=eks mlops doctor --json
    """
    from ..platform.doctor import exit_code, run_checks
    from ..targets import get_target
    from . import render

    config = state(ctx).config()
    checks = run_checks(config, get_target(config).checks())
    code = exit_code(checks)
    if state(ctx).json:
        render.print_json({"ok": code == 0, "checks": [c.as_dict() for c in checks]})
    else:
        rows = [
            (c.name, render.ok_mark(c.ok) if c.required or c.ok else render.styled("missing", "yellow"), c.detail, c.fix)
            for c in checks
        ]
        render.show(render.table("mlops doctor", ["check", "status", "detail", "fix"], rows))
    raise typer.Exit(code)

"""Checks of option values that the parser cannot make: options that exclude each other, and aliases.

Both end as one `UsageError` (exit 2) before the command does anything:

    exclusive(version="--version", alias="--alias", given={"version": "3", "alias": None})   # fine
    checked_alias("bad alias!")    # UsageError naming MLflow's rule
"""

from __future__ import annotations

from typing import Any, Mapping


def exclusive(given: Mapping[str, Any], *, hint: str | None = None) -> None:
    """At most one of the options in `given` ({"--version": value, ...}) may be set (not None/False)."""
    from ..common.errors import UsageError

    chosen = [flag for flag, value in given.items() if value not in (None, False)]
    if len(chosen) > 1:
        listed = ", ".join(chosen[:-1]) + f" and {chosen[-1]}"
        raise UsageError(f"{listed} exclude each other: give one of {', '.join(given)}",
                         hint=hint or "run the command again with only one of them")


def checked_alias(alias: str | None, option: str = "--alias") -> str | None:
    """`alias` unchanged when MLflow accepts it as a registered model alias (config/values.py has the rule)."""
    from ..common.errors import UsageError
    from ..config.values import ALIAS_RULE, alias_problem

    if alias is None:
        return None
    problem = alias_problem(alias)
    if problem:
        raise UsageError(f"{option}: {problem}", hint=f"an alias is {ALIAS_RULE}, e.g. champion or staging")
    return alias

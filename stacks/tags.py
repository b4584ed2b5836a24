"""Tags every resource carries, so a bill or a console search finds the stack's resources."""

from __future__ import annotations


def stack_tags(project: str, stack: str) -> dict[str, str]:
    return {"project": project, "stack": stack, "managed-by": "mlops"}

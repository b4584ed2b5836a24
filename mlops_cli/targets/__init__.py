"""Where the platform runs: local processes, an existing Kubernetes cluster, or EKS via Pulumi. `get_target` is
the one lazy entry point: a target's module (and its heavy clients) loads only when that target is chosen.
May import: services, stacks and everything beneath them.
"""

from __future__ import annotations

from ..common.errors import ConfigError
from ..config.settings import Config
from .base import ComponentStatus, DeployOptions, DownOptions, Outcome, StepResult, Target, UpOptions

__all__ = ["ComponentStatus", "DeployOptions", "DownOptions", "Outcome", "StepResult", "Target", "UpOptions", "get_target"]


def get_target(config: Config, name: str | None = None) -> Target:
    """The target named (or configured), imported only when asked for."""
    chosen = name or config.project.target
    if chosen == "local":
        from .local import LocalTarget

        return LocalTarget(config)
    if chosen == "kubernetes":
        from .kubernetes import KubernetesTarget

        return KubernetesTarget(config)
    if chosen == "eks":
        from .eks import EksTarget

        return EksTarget(config)
    raise ConfigError(f"unknown target {chosen!r}", hint="use one of: local, kubernetes, eks")

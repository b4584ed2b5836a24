"""Where the platform runs: local processes, an existing Kubernetes cluster, or EKS via Pulumi."""

from .base import ComponentStatus, DeployOptions, DownOptions, Outcome, StepResult, Target, UpOptions, get_target

__all__ = ["ComponentStatus", "DeployOptions", "DownOptions", "Outcome", "StepResult", "Target", "UpOptions", "get_target"]

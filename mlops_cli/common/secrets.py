"""Secrets come from the environment only; they are never written to mlops.toml or printed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

# Environment variables whose values are secret. `mlops config show` masks them.
SECRET_ENV_VARS = (
    "MLOPS_GATEWAY_PASSWORD",
    "MLOPS_GATEWAY_ADMIN_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "PULUMI_CONFIG_PASSPHRASE",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
)


@dataclass(frozen=True)
class Secrets:
    gateway_user: str | None
    gateway_password: str | None
    pulumi_passphrase: str | None
    # The gateway's /admin routes (switching the predictor); never the same secret as /predict's.
    gateway_admin_password: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Secrets":
        env = os.environ if env is None else env
        return cls(
            gateway_user=env.get("MLOPS_GATEWAY_USER") or None,
            gateway_password=env.get("MLOPS_GATEWAY_PASSWORD") or None,
            pulumi_passphrase=env.get("PULUMI_CONFIG_PASSPHRASE"),
            gateway_admin_password=env.get("MLOPS_GATEWAY_ADMIN_PASSWORD") or None,
        )

    def __repr__(self) -> str:  # never leak values into logs or tracebacks
        return "Secrets(<masked>)"


def mask(value: str | None) -> str:
    return "" if not value else "********"


def present_secrets(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Which secret variables are set, masked, for `mlops config show`."""
    env = os.environ if env is None else env
    return {name: mask(env.get(name)) or "(not set)" for name in SECRET_ENV_VARS}

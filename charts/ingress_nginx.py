"""Step 4: the ingress-nginx controller (upstream manifest) and the basic-auth Secret it checks."""

from __future__ import annotations

from typing import Any

from mlops_cli.core.config import Config

from . import secrets, upstream

INGRESS_CLASS = "nginx"
CONTROLLER_NAMESPACE = "ingress-nginx"


def objects(config: Config, platform_secrets: secrets.PlatformSecrets | None) -> list[dict[str, Any]]:
    creds = platform_secrets.gateway if platform_secrets is not None else None
    return upstream.load(config, "ingress-nginx") + [secrets.gateway_auth(config, creds)]

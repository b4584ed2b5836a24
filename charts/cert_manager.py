"""Step 1: cert-manager, from its upstream release manifest (KServe's webhooks need its certificates)."""

from __future__ import annotations

from typing import Any

from mlops_cli.config.settings import Config

from . import upstream


def objects(config: Config, *, missing_ok: bool = False) -> list[dict[str, Any]]:
    return upstream.load(config, "cert-manager", missing_ok=missing_ok)

"""Step 3: KServe (CRDs, controller), then its cluster serving runtimes, from upstream manifests.

The runtimes are a separate step because KServe's admission webhook validates them: they can only be
applied once the controller is Available.
"""

from __future__ import annotations

from typing import Any

from mlops_cli.core.config import Config

from . import upstream


def objects(config: Config) -> list[dict[str, Any]]:
    return upstream.load(config, "kserve")


def runtimes(config: Config) -> list[dict[str, Any]]:
    return upstream.load(config, "kserve-runtimes")

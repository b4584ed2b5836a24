"""Where every image of ours comes from: the `[images]` config and the record of pushed digests.

`image_ref(config, "gateway")` is the digest reference `mlops images build --push` recorded in
`[images].record` (default `<state_dir>/images.json`, {"gateway": "REG/mlops-gateway@sha256:..."}),
else `"<registry>/mlops-<component>:<tag>"` (tag defaults to the package version). Every object
`charts/` renders for our components takes its image from here; `mlops images` may import it too.

On kind, a `kind.local/...` or `dev.local/...` image is loaded into the nodes with `kind load` and
never pulled: Knative Serving resolves tags to digests from the registry unless the registry is listed
in `registries-skipping-tag-resolving` of its config-deployment ConfigMap, whose default is
"kind.local,ko.local,dev.local" (knative/serving config/core/configmaps/deployment.yaml, v1.21.1).

Example::

    image_ref(cfg, "predictor")   # -> "kind.local/mlops-predictor:0.1.0", or ".../mlops-predictor@sha256:..."
"""

from __future__ import annotations

import json
from pathlib import Path

from mlops_cli.common.errors import ConfigError
from mlops_cli.config.settings import Config

COMPONENTS = ("gateway", "drift", "predictor", "mlflow")
# The CLI with the training stack: what the loop's CronJob runs (charts/loop_job.py). Built only when
# [loop].schedule is set: a few GB that nothing else needs.
CLI = "cli"
IMAGES = (*COMPONENTS, CLI)
# Registries Knative never asks for a digest (its default registries-skipping-tag-resolving).
LOCAL_REGISTRIES = ("kind.local", "ko.local", "dev.local")


def record_path(config: Config) -> Path:
    return config.path(config.images.record) if config.images.record else config.state_dir / "images.json"


def recorded(config: Config) -> dict[str, str]:
    """The digest references of the last push, {} when nothing was pushed yet."""
    path = record_path(config)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable image record: {exc}",
                          hint="re-run `mlops images build --push`, or delete the file to use [images].registry/tag") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ConfigError(f"{path}: expected {{\"gateway\": \"REG/mlops-gateway@sha256:...\", ...}}",
                          hint="re-run `mlops images build --push`, or delete the file")
    return data


def image_ref(config: Config, component: str) -> str:
    if component not in IMAGES:
        raise ValueError(f"unknown image component {component!r} (one of: {', '.join(IMAGES)})")
    pushed = recorded(config).get(component)
    if pushed:
        return pushed
    from mlops_cli import __version__

    return f"{config.images.registry}/mlops-{component}:{config.images.tag or __version__}"


def is_local(reference: str) -> bool:
    """True for images Knative runs without resolving a digest from a registry (kind, ko, dev)."""
    return reference.split("/", 1)[0] in LOCAL_REGISTRIES

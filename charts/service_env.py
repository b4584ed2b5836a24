"""Our services read the same typed config in the cluster as on a laptop: passed as MLOPS_<SECTION>__<KEY> env.

Only the sections a service reads are passed, with the paths it writes moved to its volumes.
Config never holds secrets (those come from Secrets via secretKeyRef), so this env is safe to render.
"""

from __future__ import annotations

import json
from typing import Any

from mlops_cli.config.settings import Config

SERVICE_SECTIONS = ("registry", "serving", "gateway", "drift", "observability")
PREDICTIONS_DIR = "/data"


def config_env(config: Config, overrides: dict[str, Any] | None = None,
               sections: tuple[str, ...] = SERVICE_SECTIONS) -> list[dict[str, str]]:
    data = config.model_dump()
    values: dict[str, Any] = {}
    for section in sections:
        for key, value in data[section].items():
            values[f"{section}.{key}"] = value
    values.update({
        "project.name": config.project.name,
        "project.state_dir": "/tmp/mlops-state",
        "gateway.prediction_log": f"{PREDICTIONS_DIR}/predictions.jsonl",
        "gateway.feedback_log": f"{PREDICTIONS_DIR}/feedback.jsonl",
        "gateway.htpasswd_file": "",
    })
    values.update(overrides or {})
    env = []
    for dotted, value in sorted(values.items()):
        section, _, key = dotted.partition(".")
        text = json.dumps(value) if isinstance(value, (list, dict)) else str(value).lower() if isinstance(value, bool) else str(value)
        env.append({"name": f"MLOPS_{section.upper()}__{key.upper()}", "value": text})
    return env

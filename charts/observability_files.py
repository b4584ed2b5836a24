"""Reads what the drift work ships in charts/observability/: Prometheus scrape config, alert rules, dashboard.

Files are recognised by content, not name: a YAML file with `scrape_configs` is the scrape config, one
with `groups` holds alert rules; the dashboard is `grafana-dashboard.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlops_cli.common.errors import NotFoundError

OBSERVABILITY_DIR = Path(__file__).resolve().parent / "observability"
DASHBOARD_FILE = "grafana-dashboard.json"


def _yaml_files(directory: Path) -> list[tuple[Path, Any]]:
    import yaml

    out = []
    for path in sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")]):
        out.append((path, yaml.safe_load(path.read_text())))
    return out


def _missing(what: str, directory: Path) -> NotFoundError:
    return NotFoundError(f"no {what} in {directory}",
                         hint="charts/observability/ ships with mlops; reinstall it or restore the file from git")


def scrape_config(directory: Path | None = None) -> dict[str, Any]:
    directory = directory or OBSERVABILITY_DIR
    for _, doc in _yaml_files(directory) if directory.is_dir() else []:
        if isinstance(doc, dict) and "scrape_configs" in doc:
            return doc
    raise _missing("Prometheus scrape config (a YAML file with scrape_configs)", directory)


def alert_rules(directory: Path | None = None) -> dict[str, str]:
    """file name -> rules YAML text, as Prometheus reads it."""
    directory = directory or OBSERVABILITY_DIR
    rules = {path.name: path.read_text() for path, doc in (_yaml_files(directory) if directory.is_dir() else [])
             if isinstance(doc, dict) and "groups" in doc}
    if not rules:
        raise _missing("Prometheus alert rules (a YAML file with groups)", directory)
    return rules


def dashboard(directory: Path | None = None) -> str:
    directory = directory or OBSERVABILITY_DIR
    path = directory / DASHBOARD_FILE
    if not path.is_file():
        raise _missing(f"Grafana dashboard ({DASHBOARD_FILE})", directory)
    json.loads(path.read_text())  # a broken dashboard fails here, not silently in Grafana
    return path.read_text()

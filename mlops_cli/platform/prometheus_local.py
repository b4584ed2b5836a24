"""`mlops up --with-prometheus`: Debian's `prometheus` binary over the shipped scrape config and rules.

The scrape config in charts/observability/ is rendered with the loopback ports of [local], written
next to a copy of the alert rules, and Prometheus keeps its data under ``<state_dir>/prometheus``.

The predictor moves: every `deploy` starts the new version on the next free port. So its job reads its
target from a file (`file_sd_configs`) that `up` and `deploy` rewrite with the serving predictor's port;
Prometheus notices the change itself ("Changes to all defined files are detected via disk watches and
applied immediately": prometheus.io/docs/prometheus/latest/configuration/configuration/#file_sd_config),
with no reload and no restart.

Example::

    argv = prometheus_command(cfg, cfg.state_dir / "local" / "prometheus.yml")   # then start it
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..common.errors import NotFoundError, PreflightError
from ..config.settings import Config

OBSERVABILITY_DIR = Path(__file__).resolve().parents[2] / "charts" / "observability"
SCRAPE_FILE = "prometheus.yml"
PREDICTOR_TARGETS_FILE = "predictor-targets.json"  # in <state_dir>/local/
RULES_FILE = "alert-rules.yml"
INSTALL_HINT = ("install Debian's package: `sudo apt-get install -y prometheus` (then `sudo systemctl disable --now "
                "prometheus` so the system service does not hold port 9090), or run without --with-prometheus")


def local_targets(config: Config, predictor_ports: Iterable[int] | None = None) -> dict[str, list[str]]:
    local = config.local
    ports = list(predictor_ports) if predictor_ports is not None else [local.predictor_port]
    return {
        "gateway": [f"{local.host}:{local.gateway_port}"],
        "predictor": [f"{local.host}:{port}" for port in ports],
        "drift": [f"{local.host}:{local.drift_port}"],
        "prometheus": [f"{local.host}:{local.prometheus_port}"],
    }


def render_scrape_config(config: Config, predictor_ports: Iterable[int] | None = None,
                         source_dir: Path = OBSERVABILITY_DIR) -> dict[str, Any]:
    """The shipped scrape config with each job's targets replaced by the local component's address."""
    import yaml

    source = source_dir / SCRAPE_FILE
    if not source.is_file():
        raise NotFoundError(f"Prometheus scrape config {source} is missing",
                            hint="it ships with mlops in charts/observability/; restore it from git")
    scrape = yaml.safe_load(source.read_text())  # freshly parsed: ours to change
    targets = local_targets(config, predictor_ports)
    for job in scrape.get("scrape_configs", []):
        if job.get("job_name") in targets:
            for static in job.get("static_configs", []):
                static["targets"] = targets[job["job_name"]]
        if job.get("job_name") == "predictor":
            job["file_sd_configs"] = [{"files": [str(predictor_targets_path(config))]}]
            del job["static_configs"]
    scrape["rule_files"] = [RULES_FILE]
    return scrape


def predictor_targets_path(config: Config) -> Path:
    return config.state_dir / "local" / PREDICTOR_TARGETS_FILE


def write_predictor_targets(config: Config, ports: Iterable[int] | Mapping[int, str]) -> Path:
    """The predictor job's targets (file_sd format: a list of static configs), atomically: the ports
    that serve now. Given {port: revision}, each target carries its `revision` label (the predictor
    program's name, e.g. predictor-v2): what the canary judge's queries select a version's requests by,
    as Prometheus' pod labels do in a cluster (monitoring/canary_analysis.py)."""
    import json

    from ..common.atomic_file import write_atomically

    path = predictor_targets_path(config)
    if isinstance(ports, Mapping):
        groups = [{"targets": [f"{config.local.host}:{port}"], "labels": {"component": "predictor", "revision": name}}
                  for port, name in ports.items()]
    else:
        targets = [f"{config.local.host}:{port}" for port in ports]
        groups = [{"targets": targets, "labels": {"component": "predictor"}}] if targets else []
    write_atomically(path, json.dumps(groups, indent=1))
    return path


def prometheus_command(config: Config, config_path: Path, predictor_ports: Iterable[int] | None = None) -> list[str]:
    """Write the rendered scrape config (and the rules beside it) to `config_path`; return Prometheus' argv."""
    import yaml

    binary = shutil.which("prometheus")
    if binary is None:
        raise PreflightError("`prometheus` is not installed (needed for --with-prometheus)", hint=INSTALL_HINT)
    config_path = Path(config_path)
    config_path.parent.mkdir(parents=True, exist_ok=True)
    rules = OBSERVABILITY_DIR / RULES_FILE
    if not rules.is_file():
        raise NotFoundError(f"Prometheus alert rules {rules} are missing",
                            hint="they ship with mlops in charts/observability/; restore them from git")
    shutil.copyfile(rules, config_path.parent / RULES_FILE)
    rendered = yaml.safe_dump(render_scrape_config(config, predictor_ports), sort_keys=False)
    write_predictor_targets(config, predictor_ports or [])  # the serving predictor's: `deploy` rewrites it
    config_path.write_text("# Rendered by `mlops up --with-prometheus` from charts/observability/prometheus.yml.\n"
                           + rendered)
    data_dir = config.state_dir / "prometheus"
    data_dir.mkdir(parents=True, exist_ok=True)
    return [
        binary,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={data_dir}",
        f"--web.listen-address={config.local.host}:{config.local.prometheus_port}",
        "--storage.tsdb.retention.time=7d",
    ]

"""Step 5a: Prometheus with the scrape config and alert rules from charts/observability/.

The shipped scrape config names its jobs after our components; in the cluster each job's static
targets become that component's Service address. Everything else in it (intervals, paths,
relabelling) is kept as written.
"""

from __future__ import annotations

import copy
from typing import Any

from mlops_cli.config.settings import Config

from . import observability_files
from .inference_service import predictor_host
from .objects import config_map, container, deployment, pvc, service

PORT = 9090
RULES_DIR = "/etc/prometheus/rules"
UID = 65534  # "nobody", the user the upstream image is built for


def cluster_targets(config: Config) -> dict[str, str]:
    ns = config.kubernetes.namespace
    return {
        "gateway": f"gateway.{ns}.svc.cluster.local:80",
        "drift": f"drift.{ns}.svc.cluster.local:8085",
        "predictor": f"{predictor_host(config)}:80",
        "mlflow": f"mlflow.{ns}.svc.cluster.local:5000",
        "prometheus": f"localhost:{PORT}",
    }


def prometheus_config(config: Config) -> dict[str, Any]:
    scrape = copy.deepcopy(observability_files.scrape_config())
    targets = cluster_targets(config)
    for job in scrape.get("scrape_configs", []):
        component = next((c for c in targets if c in job.get("job_name", "")), None)
        if component and "static_configs" in job:
            for static in job["static_configs"]:
                static["targets"] = [targets[component]]
    scrape["rule_files"] = [f"{RULES_DIR}/*.yml", f"{RULES_DIR}/*.yaml"]
    return scrape


def objects(config: Config) -> list[dict[str, Any]]:
    import yaml

    rules = observability_files.alert_rules()
    c = container(
        config, "prometheus", "prometheus", config.kubernetes.prometheus_image,
        args=["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus",
              "--storage.tsdb.retention.time=15d"],  # no --web.enable-lifecycle: no remote /-/quit or /-/reload
        port=PORT, probe_path="/-/ready",
        mounts=[{"name": "config", "mountPath": "/etc/prometheus", "readOnly": True},
                {"name": "rules", "mountPath": RULES_DIR, "readOnly": True},
                {"name": "data", "mountPath": "/prometheus"}],
    )
    dep = deployment(
        config, "prometheus", [c], uid=UID, strategy="Recreate",
        volumes=[{"name": "config", "configMap": {"name": "prometheus-config"}},
                 {"name": "rules", "configMap": {"name": "prometheus-rules"}},
                 {"name": "data", "persistentVolumeClaim": {"claimName": "prometheus-data"}}],
    )
    return [
        config_map(config, "prometheus-config", "prometheus", {"prometheus.yml": yaml.safe_dump(prometheus_config(config), sort_keys=False)}),
        config_map(config, "prometheus-rules", "prometheus", rules),
        pvc(config, "prometheus-data", "prometheus", config.kubernetes.prometheus_volume_size),
        dep,
        service(config, "prometheus", {"http": (PORT, PORT)}),
    ]

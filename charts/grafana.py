"""Step 5b: Grafana with Prometheus, Loki and Jaeger datasources and our dashboard provisioned.

Its admin login is the platform's admin credential (Secret `mlops-admin-auth`, never /predict's password),
read from that Secret (never written here).
"""

from __future__ import annotations

from typing import Any

from mlops_cli.config.settings import Config

from . import observability_files
from .jaeger import UI_PORT as JAEGER_UI_PORT
from .objects import config_map, container, deployment, secret_env, service
from .secrets import ADMIN_AUTH as AUTH_SECRET

PORT = 3000
UID = 472  # the grafana user of the upstream image


def datasources(config: Config) -> dict[str, Any]:
    ns = config.kubernetes.namespace
    return {
        "apiVersion": 1,
        "datasources": [
            {"name": "Prometheus", "type": "prometheus", "uid": "prometheus", "access": "proxy", "isDefault": True,
             "url": f"http://prometheus.{ns}.svc.cluster.local:9090"},
            {"name": "Loki", "type": "loki", "uid": "loki", "access": "proxy", "url": f"http://loki.{ns}.svc.cluster.local:3100"},
            {"name": "Jaeger", "type": "jaeger", "uid": "jaeger", "access": "proxy",
             "url": f"http://jaeger.{ns}.svc.cluster.local:{JAEGER_UI_PORT}"},
        ],
    }


DASHBOARD_PROVIDER = {
    "apiVersion": 1,
    "providers": [{"name": "mlops", "folder": "mlops", "type": "file", "disableDeletion": True,
                   "options": {"path": "/var/lib/grafana/dashboards"}}],
}


def objects(config: Config) -> list[dict[str, Any]]:
    import yaml

    c = container(
        config, "grafana", "grafana", config.kubernetes.grafana_image, port=PORT, probe_path="/api/health",
        env=[secret_env("GF_SECURITY_ADMIN_USER", AUTH_SECRET, "user"),
             secret_env("GF_SECURITY_ADMIN_PASSWORD", AUTH_SECRET, "password"),
             {"name": "GF_PATHS_DATA", "value": "/var/lib/grafana/data"},
             {"name": "GF_ANALYTICS_REPORTING_ENABLED", "value": "false"},
             {"name": "GF_AUTH_ANONYMOUS_ENABLED", "value": "false"}],
        mounts=[{"name": "datasources", "mountPath": "/etc/grafana/provisioning/datasources", "readOnly": True},
                {"name": "providers", "mountPath": "/etc/grafana/provisioning/dashboards", "readOnly": True},
                {"name": "dashboards", "mountPath": "/var/lib/grafana/dashboards", "readOnly": True},
                {"name": "data", "mountPath": "/var/lib/grafana/data"}],
    )
    dep = deployment(
        config, "grafana", [c], uid=UID,
        volumes=[{"name": "datasources", "configMap": {"name": "grafana-datasources"}},
                 {"name": "providers", "configMap": {"name": "grafana-dashboard-provider"}},
                 {"name": "dashboards", "configMap": {"name": "grafana-dashboards"}},
                 {"name": "data", "emptyDir": {}}],
    )
    return [
        config_map(config, "grafana-datasources", "grafana", {"datasources.yaml": yaml.safe_dump(datasources(config), sort_keys=False)}),
        config_map(config, "grafana-dashboard-provider", "grafana", {"provider.yaml": yaml.safe_dump(DASHBOARD_PROVIDER, sort_keys=False)}),
        config_map(config, "grafana-dashboards", "grafana", {"mlops.json": observability_files.dashboard()}),
        dep,
        service(config, "grafana", {"http": (PORT, PORT)}),
    ]


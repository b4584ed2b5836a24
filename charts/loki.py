"""Step 5d: Loki (single binary, filesystem storage on a PVC) and Promtail shipping every pod's log to it."""

from __future__ import annotations

from typing import Any

from mlops_cli.config.settings import Config

from .objects import config_map, container, deployment, labels, metadata, pod_security, pvc, service

PORT = 3100
UID = 10001

LOKI_CONFIG = """\
auth_enabled: false
server:
  http_listen_port: 3100
common:
  path_prefix: /loki
  replication_factor: 1
  ring:
    kvstore:
      store: inmemory
  storage:
    filesystem:
      chunks_directory: /loki/chunks
      rules_directory: /loki/rules
schema_config:
  configs:
    - from: "2024-01-01"
      store: tsdb
      object_store: filesystem
      schema: v13
      index:
        prefix: index_
        period: 24h
limits_config:
  retention_period: 168h
compactor:
  working_directory: /loki/compactor
  retention_enabled: true
  delete_request_store: filesystem
analytics:
  reporting_enabled: false
"""


def promtail_config(config: Config) -> str:
    return f"""\
server:
  http_listen_port: 9080
  grpc_listen_port: 0
positions:
  filename: /run/promtail/positions.yaml
clients:
  - url: http://loki.{config.kubernetes.namespace}.svc.cluster.local:{PORT}/loki/api/v1/push
scrape_configs:
  - job_name: pods
    kubernetes_sd_configs:
      - role: pod
    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_node_name]
        target_label: __host__
      - source_labels: [__meta_kubernetes_namespace]
        target_label: namespace
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
      - source_labels: [__meta_kubernetes_pod_container_name]
        target_label: container
      - source_labels: [__meta_kubernetes_pod_label_app_kubernetes_io_name]
        target_label: app
      - source_labels: [__meta_kubernetes_pod_uid, __meta_kubernetes_pod_container_name]
        separator: /
        target_label: __path__
        replacement: /var/log/pods/*$1/*.log
    pipeline_stages:
      - cri: {{}}
"""


def loki(config: Config) -> list[dict[str, Any]]:
    c = container(
        config, "loki", "loki", config.kubernetes.loki_image, args=["-config.file=/etc/loki/loki.yaml"],
        port=PORT, probe_path="/ready",
        mounts=[{"name": "config", "mountPath": "/etc/loki", "readOnly": True}, {"name": "data", "mountPath": "/loki"}],
    )
    dep = deployment(config, "loki", [c], uid=UID, strategy="Recreate",
                     volumes=[{"name": "config", "configMap": {"name": "loki-config"}},
                              {"name": "data", "persistentVolumeClaim": {"claimName": "loki-data"}}])
    return [
        config_map(config, "loki-config", "loki", {"loki.yaml": LOKI_CONFIG}),
        pvc(config, "loki-data", "loki", config.kubernetes.loki_volume_size),
        dep,
        service(config, "loki", {"http": (PORT, PORT)}),
    ]


def logs_namespace(config: Config) -> str:
    """Promtail reads the nodes' log files (a hostPath volume), which Pod Security `restricted` (enforced
    on our namespace) forbids: it runs alone in its own namespace, labelled `privileged`."""
    return f"{config.kubernetes.namespace}-logs"


def promtail(config: Config) -> list[dict[str, Any]]:
    ns = logs_namespace(config)
    c = container(
        config, "promtail", "promtail", config.kubernetes.promtail_image, args=["-config.file=/etc/promtail/promtail.yaml"],
        env=[{"name": "HOSTNAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        mounts=[{"name": "config", "mountPath": "/etc/promtail", "readOnly": True},
                {"name": "positions", "mountPath": "/run/promtail"},
                {"name": "pods", "mountPath": "/var/log/pods", "readOnly": True}],
    )
    security = pod_security(UID)
    # Pod logs are root:root 0640 on the node: a non-root user in group 0 can read them, root cannot be avoided otherwise.
    security["runAsGroup"] = 0
    security.pop("fsGroup")
    daemonset = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": metadata("promtail", "promtail", ns),
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "promtail", "app.kubernetes.io/part-of": "mlops"}},
            "template": {
                "metadata": {"labels": labels("promtail")},
                "spec": {
                    "serviceAccountName": "promtail",
                    "securityContext": security,
                    "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [c],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                                {"name": "config", "configMap": {"name": "promtail-config"}},
                                {"name": "positions", "emptyDir": {}},
                                {"name": "pods", "hostPath": {"path": "/var/log/pods", "type": "Directory"}}],
                },
            },
        },
    }
    return [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": ns, "labels": {**labels("promtail"), "pod-security.kubernetes.io/enforce": "privileged"}}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata("promtail", "promtail", ns)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": metadata(f"{ns}-promtail", "promtail"),
         "rules": [{"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": metadata(f"{ns}-promtail", "promtail"),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"{ns}-promtail"},
         "subjects": [{"kind": "ServiceAccount", "name": "promtail", "namespace": ns}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata("promtail-config", "promtail", ns),
         "data": {"promtail.yaml": promtail_config(config)}},
        daemonset,
    ]


def objects(config: Config) -> list[dict[str, Any]]:
    return loki(config) + promtail(config)

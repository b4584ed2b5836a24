"""Step 5a: Prometheus with the scrape config and alert rules from charts/observability/.

The shipped scrape config names its jobs after our components. In the cluster, the gateway, drift and
predictor jobs scrape every pod on its own (`kubernetes_sd_configs`, role `pod`, this namespace only:
the PodMonitor pattern without the operator), and MLflow keeps its Service address. Why per pod: a
counter is one process's. Prometheus reads any decrease between two samples of a series as a counter
reset (prometheus/prometheus docs/querying/functions.md, `resets()` and `increase()`), so a Service
address that lands each scrape on a random pod of two makes every switch a reset and `increase()`
reports traffic nobody sent. Each pod's series carries `pod`, and the predictor's the pod's Knative
revision (`serving.knative.dev/revision`, set on every pod of a revision: knative/serving
pkg/apis/serving/register.go `RevisionLabelKey`) as `revision`: the canary gate's
(monitoring/canary_analysis.py) way to judge a canary on its own traffic. Knative's queue-proxy in each
predictor pod is scraped the same way, on its request-metrics port `http-usermetric` (9091, served once
charts/knative.py sets `request-metrics-protocol`), a job the cluster has and the local platform has not.
Nothing is scraped through the Knative route or queue-proxy's proxy port 8012: Knative counts those
requests as traffic and would never scale the predictor to zero. Service discovery needs a Role to list
and watch the namespace's pods, and egress to the API server (network_policies.py).
Everything else in the shipped file (intervals, paths) is kept as written.
"""

from __future__ import annotations

import copy
from typing import Any

from mlops_cli.config.settings import Config

from . import observability_files
from .inference_service import PORT as PREDICTOR_PORT
from .inference_service import predictor_pods
from .objects import config_map, container, deployment, metadata, pvc, service, service_account

PORT = 9090
RULES_DIR = "/etc/prometheus/rules"
UID = 65534  # "nobody", the user the upstream image is built for
SERVICE_ACCOUNT = "prometheus"
KSERVE_CONTAINER = "kserve-container"  # KServe's name for the predictor's model container
QUEUE_PROXY = "queue-proxy"  # Knative's sidecar (knative/serving pkg/reconciler/revision/resources/names)
# queue-proxy's request metrics port, by the name Knative gives it (pkg/apis/serving/v1/revision_helpers.go
# UserQueueMetricsPortName; 9091, pkg/networking/constants.go UserQueueMetricsPort)
QUEUE_METRICS_PORT_NAME, QUEUE_METRICS_PORT = "http-usermetric", 9091
CLUSTER_ONLY = (QUEUE_PROXY,)  # jobs the shipped (local) scrape config has no counterpart of


def _pod_label(key: str) -> str:
    """The meta label Prometheus makes of a pod label (any character outside [a-zA-Z0-9_] becomes _)."""
    return "__meta_kubernetes_pod_label_" + "".join(c if c.isalnum() else "_" for c in key)


def _per_pod(config: Config, keep: dict[str, str], container_name: str, port: int | str,
             extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Service discovery of this namespace's pods, kept by label and container, scraped at pod IP:port; a
    port given by name keeps only the target of that declared containerPort (at the address discovery gave)."""
    relabel: list[dict[str, Any]] = [
        {"source_labels": [_pod_label(k)], "regex": v, "action": "keep"} for k, v in keep.items()]
    relabel += [
        {"source_labels": ["__meta_kubernetes_pod_container_name"], "regex": container_name, "action": "keep"},
        {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Running", "action": "keep"},
        {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": port, "action": "keep"}
        if isinstance(port, str) else
        {"source_labels": ["__meta_kubernetes_pod_ip"], "regex": "(.+)", "replacement": f"$1:{port}",
         "target_label": "__address__"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "instance"},
        *(extra or []),
    ]
    return {"kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [config.kubernetes.namespace]}}],
            "relabel_configs": relabel}


def cluster_jobs(config: Config) -> dict[str, dict[str, Any]]:
    """How each job finds its targets in the cluster (replaces the shipped file's static_configs)."""
    from . import drift, gateway

    ns = config.kubernetes.namespace
    revision = {"source_labels": [_pod_label("serving.knative.dev/revision")], "target_label": "revision"}
    return {
        "gateway": _per_pod(config, {"app.kubernetes.io/name": "gateway"}, "gateway", gateway.PORT),
        "drift": _per_pod(config, {"app.kubernetes.io/name": "drift"}, "drift", drift.PORT),
        "predictor": _per_pod(config, predictor_pods(config), KSERVE_CONTAINER, PREDICTOR_PORT, [revision]),
        QUEUE_PROXY: _per_pod(config, predictor_pods(config), QUEUE_PROXY, QUEUE_METRICS_PORT_NAME, [revision]),
        "mlflow": {"static_configs": [{"targets": [f"mlflow.{ns}.svc.cluster.local:5000"]}]},
        "prometheus": {"static_configs": [{"targets": [f"localhost:{PORT}"]}]},
    }


def prometheus_config(config: Config) -> dict[str, Any]:
    scrape = copy.deepcopy(observability_files.scrape_config())
    jobs = cluster_jobs(config)
    for job in scrape.get("scrape_configs", []):
        component = next((c for c in jobs if c in job.get("job_name", "")), None)
        if component is None:
            continue
        labels = {k: v for static in job.pop("static_configs", []) for k, v in (static.get("labels") or {}).items()}
        found = copy.deepcopy(jobs[component])
        if "static_configs" in found:
            for static in found["static_configs"]:
                static["labels"] = dict(labels)
        else:  # the shipped labels (component=...) become a relabel step of the discovered targets
            found["relabel_configs"] += [{"target_label": k, "replacement": v} for k, v in labels.items()]
        job.update(found)
    shipped = {job.get("job_name") for job in scrape.get("scrape_configs", [])}
    for name in (n for n in CLUSTER_ONLY if n not in shipped):
        found = copy.deepcopy(jobs[name])
        found["relabel_configs"].append({"target_label": "component", "replacement": name})
        scrape.setdefault("scrape_configs", []).append({"job_name": name, "metrics_path": "/metrics", **found})
    scrape["rule_files"] = [f"{RULES_DIR}/*.yml", f"{RULES_DIR}/*.yaml"]
    return scrape


def rbac(config: Config) -> list[dict[str, Any]]:
    """Prometheus may list and watch the pods of its own namespace: nothing else, nowhere else."""
    ns = config.kubernetes.namespace
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": metadata("prometheus", "prometheus", ns),
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": metadata("prometheus", "prometheus", ns),
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "prometheus"},
               "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": ns}]}
    return [service_account(config, SERVICE_ACCOUNT, "prometheus"), role, binding]


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
        config, "prometheus", [c], uid=UID, strategy="Recreate", service_account=SERVICE_ACCOUNT,
        volumes=[{"name": "config", "configMap": {"name": "prometheus-config"}},
                 {"name": "rules", "configMap": {"name": "prometheus-rules"}},
                 {"name": "data", "persistentVolumeClaim": {"claimName": "prometheus-data"}}],
    )
    return [
        *rbac(config),
        config_map(config, "prometheus-config", "prometheus", {"prometheus.yml": yaml.safe_dump(prometheus_config(config), sort_keys=False)}),
        config_map(config, "prometheus-rules", "prometheus", rules),
        pvc(config, "prometheus-data", "prometheus", config.kubernetes.prometheus_volume_size),
        dep,
        service(config, "prometheus", {"http": (PORT, PORT)}),
    ]

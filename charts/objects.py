"""Builders for the Kubernetes objects our components share: metadata, hardened containers, services.

Every workload we render runs as a non-root user with a read-only root filesystem, drops all
capabilities and carries requests and limits; these builders are the one place that is decided.
"""

from __future__ import annotations

from typing import Any

from mlops_cli.config.settings import Config

PART_OF = "mlops"
MANAGED_BY = "mlops"

# Requests per component (cpu, memory); limits are 2x CPU and the same memory (memory is not
# compressible, so a limit above the request only defers the OOM kill).
DEFAULT_RESOURCES: dict[str, tuple[str, str]] = {
    "gateway": ("250m", "512Mi"),
    "predictor": ("1", "2Gi"),
    "drift": ("250m", "1Gi"),
    "mlflow": ("250m", "1Gi"),
    "prometheus": ("250m", "1Gi"),
    "grafana": ("100m", "256Mi"),
    "jaeger": ("100m", "512Mi"),
    "loki": ("250m", "512Mi"),
    "promtail": ("50m", "128Mi"),
    "loop": ("1", "4Gi"),   # `mlops loop --once` fine-tunes the challenger (charts/loop_job.py)
}


def labels(component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def selector(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": component, "app.kubernetes.io/part-of": PART_OF}


def metadata(name: str, component: str, namespace: str | None = None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels(component)}
    if namespace is not None:
        meta["namespace"] = namespace
    meta.update(extra)
    return meta


# `[kubernetes].resource_profile = "e2e"`: a 4-vCPU kind node (GitHub's ubuntu-24.04 runner) also runs
# Knative, KServe, cert-manager, Envoy Gateway and Kourier; ours ask for ~0.9 vCPU with a canary's two
# predictor pods (limits stay 2x, so a request is a floor, not a cap).
E2E_RESOURCES: dict[str, tuple[str, str]] = {
    "gateway": ("100m", "256Mi"),
    "predictor": ("250m", "1Gi"),
    "drift": ("100m", "512Mi"),
    "mlflow": ("100m", "512Mi"),
    "prometheus": ("100m", "512Mi"),
    "grafana": ("50m", "128Mi"),
    "jaeger": ("50m", "256Mi"),
    "loki": ("100m", "256Mi"),
    "promtail": ("25m", "64Mi"),
    "loop": ("250m", "2Gi"),
}

GPU_RESOURCE = "nvidia.com/gpu"   # what the NVIDIA device plugin advertises


def requests_gpu(config: Config) -> bool:
    """Does anything the platform renders ask for a GPU? Only the predictor can ([serving].device)."""
    return GPU_RESOURCE in resources(config, "predictor")["limits"]


def resources(config: Config, component: str) -> dict[str, dict[str, str]]:
    table = E2E_RESOURCES if config.kubernetes.resource_profile == "e2e" else DEFAULT_RESOURCES
    cpu, memory = table[component]
    override = config.kubernetes.resources.get(component, {})
    cpu, memory = override.get("cpu", cpu), override.get("memory", memory)
    out = {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": _double_cpu(cpu), "memory": memory}}
    if component == "predictor" and config.serving.device == "cuda":
        # An extended resource is requested by its limit (requests default to it). EKS runs the
        # ExtendedResourceToleration admission plugin (EKS user guide, "platform versions": enabled admission
        # controllers), so this pod also tolerates the GPU pool's `nvidia.com/gpu` taint.
        out["limits"][GPU_RESOURCE] = "1"
    return out


def _double_cpu(cpu: str) -> str:
    """Twice `cpu`, written as the API server writes it back (whole cores without "m": "2", not "2000m"):
    KServe's webhook stores the InferenceService's resources in that form, and a different spelling of the
    same value would read as a change on every `mlops deploy` (tests/test_real_kserve.py)."""
    millis = (int(cpu[:-1]) if cpu.endswith("m") else int(float(cpu) * 1000)) * 2
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def pod_security(uid: int = 10001) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security(uid: int | None = None) -> dict[str, Any]:
    """With uid: also the user, group and seccomp profile, for pods that may not carry a pod-level
    securityContext (Knative-managed pods: see charts/inference_service.py)."""
    sc: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    if uid is not None:
        sc.update({"runAsUser": uid, "runAsGroup": uid, "seccompProfile": {"type": "RuntimeDefault"}})
    return sc


def container(
    config: Config, component: str, name: str, image: str, *, args: list[str] | None = None,
    command: list[str] | None = None, port: int | None = None, env: list[dict[str, Any]] | None = None,
    mounts: list[dict[str, Any]] | None = None, probe_path: str | None = None, live_path: str | None = None,
    uid: int | None = None, probe_host: str | None = None,
) -> dict[str, Any]:
    """probe_path: readiness (and liveness, unless live_path names another path).
    uid: put the user and seccomp profile on the container (pods without a pod-level securityContext)."""
    c: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "resources": resources(config, component),
        "securityContext": container_security(uid),
        # Read-only root: anything that writes scratch files gets an emptyDir at /tmp.
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *(mounts or [])],
    }
    if command:
        c["command"] = command
    if args:
        c["args"] = args
    if env:
        c["env"] = env
    if port is not None:
        c["ports"] = [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    if probe_path and port is not None:
        # Two probes, each built whole: they never share a nested dict (a shared httpGet once made
        # setting the liveness path rewrite the readiness path too).
        c["readinessProbe"] = http_probe(probe_path, port, initial_delay_s=5, failure_threshold=3, host=probe_host)
        c["livenessProbe"] = http_probe(live_path or probe_path, port, initial_delay_s=30, failure_threshold=6, host=probe_host)
    return c


def http_probe(path: str, port: int, *, initial_delay_s: int, failure_threshold: int, host: str | None = None) -> dict[str, Any]:
    """host: the Host header the kubelet sends (default: the pod IP), for servers that check it."""
    get: dict[str, Any] = {"path": path, "port": port}
    if host:
        get["httpHeaders"] = [{"name": "Host", "value": host}]
    return {"httpGet": get, "initialDelaySeconds": initial_delay_s,
            "periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": failure_threshold}


def deployment(
    config: Config, component: str, containers: list[dict[str, Any]], *, replicas: int | None = 1,
    volumes: list[dict[str, Any]] | None = None, service_account: str | None = None,
    annotations: dict[str, str] | None = None, uid: int = 10001, strategy: str = "RollingUpdate",
    init_containers: list[dict[str, Any]] | None = None, automount_token: bool | None = None,
) -> dict[str, Any]:
    ns = config.kubernetes.namespace
    pod_spec: dict[str, Any] = {
        "securityContext": pod_security(uid),
        "automountServiceAccountToken": service_account is not None if automount_token is None else automount_token,
        "containers": containers,
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}, *(volumes or [])],
        **({"serviceAccountName": service_account} if service_account else {}),
        **({"initContainers": init_containers} if init_containers else {}),
    }
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector(component)},
        "strategy": {"type": strategy},
        "template": {"metadata": {"labels": labels(component), **({"annotations": annotations} if annotations else {})},
                     "spec": pod_spec},
        # None: the HPA owns the replica count, so apply must not fight it
        **({"replicas": replicas} if replicas is not None else {}),
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata(component, component, ns), "spec": spec}


def service(config: Config, component: str, ports: dict[str, tuple[int, int]], name: str | None = None) -> dict[str, Any]:
    """ports: {port_name: (service_port, target_port)}."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name or component, component, config.kubernetes.namespace),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(component),
            "ports": [{"name": n, "port": p, "targetPort": t, "protocol": "TCP"} for n, (p, t) in ports.items()],
        },
    }


def config_map(config: Config, name: str, component: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(name, component, config.kubernetes.namespace), "data": data}


def pvc(config: Config, name: str, component: str, size: str, access_mode: str = "ReadWriteOnce") -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": [access_mode], "resources": {"requests": {"storage": size}}}
    if config.kubernetes.storage_class:
        spec["storageClassName"] = config.kubernetes.storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata(name, component, config.kubernetes.namespace), "spec": spec}


def service_account(config: Config, name: str, component: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta = metadata(name, component, config.kubernetes.namespace)
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta, "automountServiceAccountToken": False}


def secret_env(name: str, secret: str, key: str, optional: bool = False) -> dict[str, Any]:
    """An env var read from a Secret: the manifest names the Secret, never the value."""
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


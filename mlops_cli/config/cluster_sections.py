"""The sections of `mlops.toml` for the cluster targets: [kubernetes] (any cluster) and [eks] (the cluster
`mlops up --target eks` creates).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .values import Quantity, Section


class KubernetesConfig(Section):
    kubeconfig: str = ""
    context: str = ""
    namespace: str = "mlops"
    version: str = "1.35"  # as [eks].version defaults to; rendered objects are tested against 1.34 and 1.35
    ingress_host: str = "mlops.local"   # the public HTTPS host of the gateway (Envoy Gateway listener)
    tls_issuer: str = ""   # a cert-manager ClusterIssuer for that host (e.g. letsencrypt-prod); empty: self-signed
    tls_ca_bundle: str = ""   # PEM file `mlops predict` trusts for that host (a private CA); empty: see targets/kubernetes_edge.py
    ingress_address: str = ""   # host:port to connect to when ingress_host does not resolve (kind port-forward); TLS still checks ingress_host
    # Where `predict` (and the canary watch's probe) sends predictions: "edge", https://<ingress_host> as any
    # client; "service", the gateway's Service inside the cluster (plain HTTP, basic auth checked by the gateway
    # itself): the loop's CronJob sets it, its pod being the one our NetworkPolicies let in (charts/loop_job.py).
    predict_via: Literal["edge", "service"] = "edge"
    storage_class: str = ""
    manifest_cache: str = ".mlops/manifests"
    offline_bundle: str = ""
    step_timeout_s: float = Field(300.0, gt=0)
    # Upstream release manifests: each pinned by version and the sha256 of the file at its URL.
    # URLs may hold {version}. The sha256 come from mlops.lock (charts/manifest_lock.py) unless set here;
    # a file whose sha256 differs is refused.
    # Versions: the lines KServe v0.20.0 installs and tests together (its
    # install/v0.20.0/kserve-knative-mode-dependency-install.sh: Knative Serving 1.21, Envoy Gateway 1.8 with
    # Gateway API v1.5.1) at their latest patch releases, Kourier from the same Knative minor, and
    # cert-manager 1.21 (supported on Kubernetes 1.33 -> 1.36; KServe's v1.17.0 stopped at 1.33). Dates,
    # support windows and sources: charts/upstream_versions.py. This is the one place the versions live.
    cert_manager_version: str = "v1.21.2"
    cert_manager_url: str = "https://github.com/cert-manager/cert-manager/releases/download/{version}/cert-manager.yaml"
    cert_manager_sha256: str = ""
    knative_version: str = "knative-v1.21.2"
    knative_crds_url: str = "https://github.com/knative/serving/releases/download/{version}/serving-crds.yaml"
    knative_crds_sha256: str = ""
    knative_core_url: str = "https://github.com/knative/serving/releases/download/{version}/serving-core.yaml"
    knative_core_sha256: str = ""
    kourier_version: str = "knative-v1.21.0"
    kourier_url: str = "https://github.com/knative-extensions/net-kourier/releases/download/{version}/kourier.yaml"
    kourier_sha256: str = ""
    kserve_version: str = "v0.20.0"
    kserve_url: str = "https://github.com/kserve/kserve/releases/download/{version}/kserve.yaml"
    kserve_sha256: str = ""
    kserve_runtimes_url: str = "https://github.com/kserve/kserve/releases/download/{version}/kserve-cluster-resources.yaml"
    kserve_runtimes_sha256: str = ""
    # The public edge: Envoy Gateway (its install.yaml carries the Gateway API v1.5.1 CRDs it was built with).
    envoy_gateway_version: str = "v1.8.4"
    envoy_gateway_url: str = "https://github.com/envoyproxy/gateway/releases/download/{version}/install.yaml"
    envoy_gateway_sha256: str = ""
    # Images of the third-party services we render ourselves (ours, MLflow included, come from [images]).
    prometheus_image: str = "quay.io/prometheus/prometheus:v2.55.1"
    grafana_image: str = "docker.io/grafana/grafana:11.3.1"
    jaeger_image: str = "docker.io/jaegertracing/all-in-one:1.63.0"
    loki_image: str = "docker.io/grafana/loki:3.3.0"
    promtail_image: str = "docker.io/grafana/promtail:3.3.0"
    # MLflow in the cluster: artifacts in S3 (IRSA role on EKS) or on a PVC; backend DB on a PVC or a URL.
    mlflow_artifacts: str = ""
    mlflow_role_arn: str = ""
    mlflow_backend_uri: str = ""
    # The predictor's own read-only identity for model storage (IRSA role on EKS), never MLflow's role.
    predictor_role_arn: str = ""
    mlflow_volume_size: Quantity = "10Gi"
    # MLflow's artifact PVC (when artifacts are not in S3). ReadWriteOnce: predictors are scheduled on
    # MLflow's node (it is the only node that can mount it); ReadWriteMany (EFS/NFS): anywhere.
    mlflow_access_mode: Literal["ReadWriteOnce", "ReadWriteMany"] = "ReadWriteOnce"
    prometheus_volume_size: Quantity = "10Gi"
    loki_volume_size: Quantity = "10Gi"
    # The prediction log the gateway writes and the drift service reads. ReadWriteOnce works on any
    # cluster by keeping the gateway pods on the drift pod's node; ReadWriteMany needs e.g. EFS or NFS.
    predictions_volume_size: Quantity = "5Gi"
    predictions_access_mode: Literal["ReadWriteOnce", "ReadWriteMany"] = "ReadWriteOnce"
    # Gateway autoscaling on CPU utilisation; per-pod request rate too only when gateway_target_rps > 0, which
    # needs a custom-metrics adapter (e.g. prometheus-adapter) serving mlops_gateway_requests_per_second: `up`
    # installs none, and an HPA with a metric it cannot read scales up on the others but never down.
    gateway_min_replicas: int = Field(2, ge=1)
    gateway_max_replicas: int = Field(6, ge=1)
    gateway_target_cpu: int = Field(70, ge=1, le=100)
    gateway_target_rps: int = Field(0, ge=0)
    # Per-component resource overrides, e.g. {gateway = {cpu = "500m", memory = "512Mi"}}: requests;
    # limits are twice the CPU and the same memory.
    resources: dict[str, dict[str, str]] = {}
    # Requests table: "default" (charts/objects.py DEFAULT_RESOURCES) or "e2e", a small one so the whole
    # platform, a canary's second predictor pod included, fits a 4-vCPU kind node (scripts/e2e-kind.sh).
    resource_profile: Literal["default", "e2e"] = "default"
    # Scale to zero: a request that finds no predictor pod waits in Knative's activator while a pod starts.
    # predictor_cold_start_s is the declared bound of that start (pod scheduled with its image on the node,
    # the model fetched by KServe's storage initializer, loaded, and seen ready by queue-proxy's probe); the
    # gateway's predictor timeout in the cluster must exceed it (else the first request after idling is a
    # 504), and the public route's timeout (charts/edge.py) exceeds the gateway's.
    predictor_cold_start_s: float = Field(60.0, gt=0)
    gateway_predictor_timeout_s: float = Field(90.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _timeout_survives_a_cold_start(self) -> "KubernetesConfig":
        if self.gateway_predictor_timeout_s <= self.predictor_cold_start_s:
            raise ValueError(f"gateway_predictor_timeout_s ({self.gateway_predictor_timeout_s:g}) must exceed "
                             f"predictor_cold_start_s ({self.predictor_cold_start_s:g}): the first request after the "
                             "predictor scaled to zero waits for a cold start; raise the timeout")
        return self

    @field_validator("resources")
    @classmethod
    def _known_components(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        components = {"gateway", "predictor", "drift", "mlflow", "prometheus", "grafana", "jaeger", "loki", "promtail", "loop"}
        for name, amounts in value.items():
            if name not in components:
                raise ValueError(f"unknown component {name!r} (one of: {', '.join(sorted(components))})")
            if not set(amounts) <= {"cpu", "memory"}:
                raise ValueError(f"{name}: only cpu and memory can be set, got {', '.join(sorted(amounts))}")
        return value


class EksConfig(Section):
    region: str = "us-east-1"
    stack: str = "dev"
    cluster_name: str = "mlops"
    version: str = "1.35"  # mlops_cli/cloud/eks_versions.py: in EKS standard support until 2027-03-27
    upgrade_policy: Literal["STANDARD", "EXTENDED"] = "STANDARD"  # at end of standard support: upgrade, or pay extended
    vpc_cidr: str = "10.0.0.0/16"
    availability_zones: int = Field(2, ge=2, le=6)  # usable ones only: EKS-supported, offering the instance types
    single_nat_gateway: bool = True
    public_access_cidrs: list[str] = []  # who may reach the public API endpoint; empty = your egress address/32
    log_retention_days: int = Field(30, ge=1)  # the control-plane log group /aws/eks/<cluster>/cluster
    release_timeout_s: float = Field(600.0, gt=0)  # down: wait this long for AWS to free LBs/volumes of the cluster
    release_poll_s: float = Field(5.0, gt=0)
    estimate_nat_gb_month: float = Field(50.0, ge=0)  # cost estimate: GB/month through NAT (image pulls, S3 without endpoint)
    estimate_log_gb_month: float = Field(5.0, ge=0)   # cost estimate: GB/month of control-plane logs
    # 2 x m6i.large (3.9 allocatable vCPU) cannot hold the platform's ~4.3 requested; `up` checks (cloud/capacity.py).
    instance_types: list[str] = ["m6i.xlarge"]
    min_size: int = Field(1, ge=0)
    desired_size: int = Field(2, ge=0)
    max_size: int = Field(4, ge=1)
    disk_size_gb: int = Field(50, ge=20)
    gpu_enabled: bool = False  # no effect alone: the GPU pool exists when [serving].device = "cuda" asks for a GPU
    gpu_instance_types: list[str] = ["g5.xlarge"]
    gpu_min_size: int = Field(0, ge=0)
    gpu_desired_size: int = Field(1, ge=0)
    gpu_max_size: int = Field(2, ge=1)
    bucket_name: str = ""
    noncurrent_version_days: int = Field(30, ge=1)
    service_account: str = "mlflow"  # the platform's IRSA service account (charts/mlflow.py)
    ecr_enabled: bool = True
    backend_url: str = ""
    kms_key: str = ""
    kubeconfig_path: str = ".mlops/eks-kubeconfig"
    admin_principals: list[str] = []   # IAM role/user ARNs given cluster admin besides the identity that runs `up`
    estimate_cross_az_gb_month: float = Field(20.0, ge=0)   # cost estimate: GB/month between zones (pod to pod)

    @field_validator("admin_principals")
    @classmethod
    def _principals(cls, value: list[str]) -> list[str]:
        for arn in value:
            if not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+", arn):
                raise ValueError(f"{arn!r} is not an IAM role or user ARN (arn:aws:iam::<account>:role/<name>)")
        return value

    @field_validator("vpc_cidr")
    @classmethod
    def _vpc_cidr(cls, value: str) -> str:
        # Subnets are the VPC split in 16 (/20s for a /16): below /22 leaves too few addresses for pods.
        net = ipaddress.ip_network(value, strict=True)
        if net.version != 4 or not 16 <= net.prefixlen <= 22:
            raise ValueError("must be an IPv4 network between /16 and /22, e.g. 10.0.0.0/16")
        return value

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        # The only values CloudWatch Logs PutRetentionPolicy accepts (its API reference).
        allowed = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
                   3288, 3653)
        if value not in allowed:
            raise ValueError(f"CloudWatch Logs accepts only {', '.join(map(str, allowed))} days")
        return value

    @field_validator("public_access_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=True)
        return value

    @model_validator(mode="after")
    def _sizes(self) -> "EksConfig":
        for prefix in ("", "gpu_"):
            lo, want, hi = (getattr(self, f"{prefix}{k}_size") for k in ("min", "desired", "max"))
            if not lo <= want <= hi:
                raise ValueError(f"need {prefix}min_size <= {prefix}desired_size <= {prefix}max_size, got {lo}/{want}/{hi}")
        return self

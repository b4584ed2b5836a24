"""The one typed configuration every command shares.

Precedence, lowest first: built-in defaults < ``mlops.toml`` (or ``--config`` / ``MLOPS_CONFIG``)
< environment (``MLOPS_<SECTION>__<KEY>``) < command-line flags.

Secrets never live here: they come from the environment only (see ``secrets.py``).

Example::

    cfg = load_config()                       # finds ./mlops.toml (or a parent's)
    cfg = load_config(overrides={"train.epochs": 5})
    cfg.train.epochs, cfg.source("train.epochs")   # -> 5, "flag"
"""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from urllib.parse import urlsplit
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator,
                      model_validator)

from ..common.errors import ConfigError
from ..common.time_window import duration_seconds

CONFIG_FILENAME = "mlops.toml"
ENV_PREFIX = "MLOPS_"
TargetName = Literal["local", "kubernetes", "eks"]
# The packaged review corpora (data/data_sources.py says what each is and where it comes from).
DataSourceName = Literal["drugscom", "rotten_tomatoes", "tweets", "amazon_snippets"]


def _duration(value: str) -> str:
    duration_seconds(value)
    return value


# A time span such as "30m", "24h" or "7d" (units s, m, h, d, w), checked when the config loads and kept
# as written; `time_window.parse_duration` turns it into a timedelta where it is used.
Duration = Annotated[str, AfterValidator(_duration)]
# A Kubernetes storage quantity in binary units, e.g. "10Gi": what a PersistentVolumeClaim requests.
Quantity = Annotated[str, Field(pattern=r"^[0-9]+(Ki|Mi|Gi|Ti)$")]


def _http_url(value: str) -> str:
    if value:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL with a host, e.g. http://127.0.0.1:9000 "
                             "(empty: not used)")
    return value


# MLflow's tracking-store schemes (mlflow/tracking/_tracking_service/utils.py registers "", file,
# databricks, http, https and mlflow/store/db/db_types.py's DATABASE_ENGINES); a bare path is refused
# here so that a typo such as "localhost:5000" is not taken for a directory or a scheme.
_DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def _tracking_uri(value: str) -> str:
    if not value or value == "databricks":
        return value
    parts = urlsplit(value)
    scheme = parts.scheme.split("+", 1)[0]  # postgresql+psycopg2: SQLAlchemy's dialect+driver
    ok = ((scheme in ("http", "https") and parts.hostname)
          or (scheme in _DB_SCHEMES and value.startswith(f"{parts.scheme}://"))
          or (scheme == "file" and parts.path.startswith("/")) or scheme == "databricks")
    if not ok:
        raise ValueError("expected an MLflow tracking URI: http(s)://host[:port], sqlite:///path, "
                         "postgresql://..., mysql://..., mssql://..., file:///path or databricks "
                         "(empty: the embedded store in the state dir)")
    return value


# URLs checked when the config loads and kept as written (no normalising, no added slash).
HttpUrl = Annotated[str, AfterValidator(_http_url)]
TrackingUri = Annotated[str, AfterValidator(_tracking_uri)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ProjectConfig(Section):
    name: str = "review-sentiment"
    target: TargetName = "local"
    state_dir: str = ".mlops"


class DataConfig(Section):
    dir: str = "data"
    classes: Literal["binary", "three"] = "binary"
    # Built in: drugsCom alone (small and quick: what a bare project and the tests get). The shipped
    # mlops.toml, the default recipe, adds the corpora that make the model travel.
    sources: list[DataSourceName] = Field(default_factory=lambda: ["drugscom"], min_length=1)
    max_rows_per_source: int = Field(0, ge=0)
    test_size: float = Field(0.2, gt=0, lt=1)
    validation_size: float = Field(0.15, gt=0, lt=1)
    seed: int = 42
    remote: str = ".mlops/dvc-remote"
    s3_endpoint_url: HttpUrl = ""


class TrainConfig(Section):
    base_model: str = ""
    max_length: int = Field(256, ge=8, le=512)
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    head_learning_rate: float = Field(1e-3, gt=0)
    epochs: int = Field(3, ge=1)
    max_steps: int = Field(0, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    layer_lr_decay: float = Field(1.0, gt=0, le=1)
    pooling: Literal["mean", "cls"] = "mean"
    class_weighting: bool = True
    class_weight_power: float = Field(0.5, ge=0, le=1)
    seed: int = 42
    threads: int = Field(0, ge=0)
    source_balance: float = Field(0.5, ge=0, le=1)
    early_stopping_patience: int = Field(1, ge=0)
    decision: Literal["balanced", "prior", "argmax"] = "balanced"
    calibrate: bool = True


class RegistryConfig(Section):
    tracking_uri: TrackingUri = ""
    experiment: str = "review-sentiment"
    model_name: str = "review-sentiment"
    champion_alias: str = "champion"
    min_f1: float = Field(0.5, ge=0, le=1)
    beat_baseline: Literal["off", "estimate", "interval"] = "off"
    connect_timeout_s: float = Field(5.0, gt=0)
    # Every later call to the tracking server (MLflow's own client): its defaults are 120 s and 7 retries
    # with exponential backoff, so a server that stops answering mid-command held it for minutes.
    request_timeout_s: int = Field(30, ge=1)
    request_retries: int = Field(2, ge=0)


class ServingConfig(Section):
    model_name: str = "sentiment"
    batch_size: int = Field(32, ge=1)
    threads: int = Field(0, ge=0)
    min_replicas: int = Field(0, ge=0)
    max_replicas: int = Field(3, ge=1)
    # What our predictor runs: the int8 ONNX export on onnxruntime (smaller, faster, no torch) or the fp32
    # torch weights. `predictor_server` picks the server in a cluster: ours, or KServe's huggingface runtime.
    runtime: Literal["onnx-int8", "torch"] = "onnx-int8"
    predictor_server: Literal["mlops", "huggingface"] = "mlops"
    ready_timeout_s: float = Field(180.0, gt=0)
    # `predict --file`: a text over [gateway].max_chars is truncated, skipped (counted, its cells left
    # empty) or fails the whole file naming its row.
    long_text: Literal["truncate", "skip", "fail"] = "truncate"
    # The predictor's batcher: under load a pass waits up to max_wait_ms to fill; a request that would wait
    # longer than latency_budget_ms (or find max_queue texts ahead) gets 503 + Retry-After at once.
    max_wait_ms: float = Field(5.0, ge=0, le=1000)
    latency_budget_ms: float = Field(2000.0, gt=0)
    max_queue: int = Field(1024, ge=1)
    # The predictor's HTTP thread runs this much nicer than its model threads, so requests use the gaps
    # the model leaves instead of pre-empting it (models/predictor.py yield_to_model; 0: same priority).
    http_nice: int = Field(10, ge=0, le=19)

    @model_validator(mode="before")
    @classmethod
    def _moved_server_choice(cls, data: Any) -> Any:
        # Before the ONNX runtime, `runtime` named the server ("mlops" | "huggingface"); that choice is
        # `predictor_server` now. Old files keep working: the huggingface server serves torch weights.
        if isinstance(data, dict) and data.get("runtime") in ("mlops", "huggingface"):
            if "predictor_server" in data:
                raise ValueError(f'runtime = "{data["runtime"]}" names a server, which is predictor_server now: '
                                 'set runtime = "onnx-int8" or "torch"')
            data = dict(data)
            server = data.pop("runtime")
            data["predictor_server"] = server
            if server == "huggingface":
                data["runtime"] = "torch"
        return data

    @model_validator(mode="after")
    def _server_can_run_it(self) -> "ServingConfig":
        if self.predictor_server == "huggingface" and self.runtime != "torch":
            raise ValueError('predictor_server = "huggingface" serves the fp32 torch weights only: '
                             'set runtime = "torch", or predictor_server = "mlops" for "onnx-int8"')
        return self


class GatewayConfig(Section):
    max_chars: int = Field(5000, ge=1)
    max_batch: int = Field(64, ge=1)
    truncation: Literal["head", "head_tail"] = "head"
    timeout_s: float = Field(5.0, gt=0)
    # Inference requests forwarded at once; past this, or when the measured completion rate says a new
    # request would wait longer than [serving].latency_budget_ms, a fast 503 with Retry-After. The default
    # is two full predictor batches (one in its passes, one filling): more only queues.
    max_in_flight: int = Field(64, ge=1)
    # Calls to the predictor in flight at once (one in its passes, one queued behind it); requests arriving
    # meanwhile ride together in the next call, at most texts_per_call texts (services/coalescer.py).
    # With several predictor replicas, more calls go out once texts_per_call texts are waiting.
    predictor_calls: int = Field(2, ge=1)
    texts_per_call: int = Field(32, ge=1)
    # The gateway process runs this much nicer than the predictor's model threads (0: same priority): on a
    # machine it shares with the predictor its ~0.5 ms of CPU per request waits for the model's gaps.
    nice: int = Field(10, ge=0, le=19)
    auth: bool = True
    user: str = "admin"
    htpasswd_file: str = ""
    max_words: int = Field(400, ge=8)
    log_text: bool = False
    prediction_log: str = ".mlops/predictions.jsonl"
    prediction_log_max_bytes: int = Field(50_000_000, ge=1024)  # rotate the prediction log past this size
    prediction_log_backups: int = Field(5, ge=0)                # rotated files kept (oldest deleted first)
    prediction_log_max_age_s: float = Field(7 * 86400.0, gt=0)  # rotated files older than this are deleted


class DriftConfig(Section):
    window: Duration = "24h"
    min_samples: int = Field(30, ge=1)
    interval: Duration = "5m"
    drift_share: float = Field(0.5, gt=0, le=1)
    reference_samples: int = Field(1000, ge=10)
    # At most this many predictions of the window are compared (a uniform random sample; the report
    # says how many): memory stays bounded however many the window holds.
    sample_size: int = Field(5000, ge=30)


class ObservabilityConfig(Section):
    otlp_endpoint: HttpUrl = ""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    service_namespace: str = "mlops"


class LocalConfig(Section):
    host: str = "127.0.0.1"
    mlflow_port: int = Field(5000, ge=1, le=65535)
    gateway_port: int = Field(8080, ge=1, le=65535)
    predictor_port: int = Field(8090, ge=1, le=65535)
    drift_port: int = Field(8085, ge=1, le=65535)
    prometheus_port: int = Field(9090, ge=1, le=65535)
    log_dir: str = ".mlops/logs"
    stop_timeout_s: float = Field(10.0, gt=0)
    # Self-healing (supervisord runs the components; the healer decides restarts).
    restart_backoff_s: float = Field(0.5, gt=0)       # first restart delay; doubles per recent restart
    restart_backoff_max_s: float = Field(30.0, gt=0)  # ceiling of that delay
    max_restarts: int = Field(5, ge=1)                # this many restarts within restart_window_s -> failed
    restart_window_s: float = Field(300.0, gt=0)
    health_interval_s: float = Field(2.0, gt=0)       # how often the healer probes each component
    health_timeout_s: float = Field(2.0, gt=0)        # one probe's timeout (also status and up's waits)
    health_failures: int = Field(3, ge=1)             # consecutive failed probes that mean "restart it"
    client_timeout_s: float = Field(30.0, gt=0)       # CLI -> gateway request timeout (predict, deploy switch)
    start_timeout_s: float = Field(120.0, gt=0)       # `up` waits this long for each component to be healthy


class CanaryConfig(Section):
    """Thresholds of `mlops deploy --canary N --observe 10m --promote-if-healthy` (monitoring/canary_analysis.py)."""

    prometheus_url: HttpUrl = ""          # empty: the local platform's Prometheus (`mlops up --with-prometheus`)
    max_error_rate: float = Field(0.01, ge=0, le=1)   # share of prediction requests answered 5xx
    max_p99_s: float = Field(1.0, gt=0)               # p99 latency of prediction requests
    min_requests: int = Field(50, ge=1)               # fewer in the window is no evidence: roll back
    interval_s: float = Field(30.0, gt=0)             # how often to look during the window


class ImagesConfig(Section):
    """Where our images (gateway, drift, predictor, mlflow) come from: see charts/image_refs.py.

    `registry` is one the user owns (ECR on EKS, ghcr.io/<org>, ...). On kind, `kind.local` (or
    `dev.local`) images are side-loaded with `kind load` and Knative skips its digest resolution for
    them (`registries-skipping-tag-resolving` in Knative's config-deployment).
    """

    registry: str = Field("kind.local", pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9._-]+)*$")
    tag: str = Field("", pattern=r"^([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$")   # empty: the package version
    record: str = ""   # empty: <state_dir>/images.json (written by `mlops images build --push`)


class KubernetesConfig(Section):
    kubeconfig: str = ""
    context: str = ""
    namespace: str = "mlops"
    version: str = "1.35"  # as [eks].version defaults to; rendered objects are tested against 1.34 and 1.35
    ingress_host: str = "mlops.local"   # the public HTTPS host of the gateway (Envoy Gateway listener)
    tls_issuer: str = ""   # a cert-manager ClusterIssuer for that host (e.g. letsencrypt-prod); empty: self-signed
    tls_ca_bundle: str = ""   # PEM file `mlops predict` trusts for that host (a private CA); empty: see targets/kubernetes_edge.py
    ingress_address: str = ""   # host:port to connect to when ingress_host does not resolve (kind port-forward); TLS still checks ingress_host
    storage_class: str = ""
    manifest_cache: str = ".mlops/manifests"
    offline_bundle: str = ""
    step_timeout_s: float = Field(300.0, gt=0)
    # Upstream release manifests: each pinned by version and the sha256 of the file at its URL.
    # URLs may hold {version}; the downloaded file is refused when its sha256 differs from the pin.
    # Versions: the set KServe v0.20.0 installs and tests together (its
    # install/v0.20.0/kserve-knative-mode-dependency-install.sh: cert-manager v1.17.0, Knative Serving
    # 1.21.1, Envoy Gateway v1.8.1 with Gateway API v1.5.1); Kourier from the same Knative minor.
    cert_manager_version: str = "v1.17.0"
    cert_manager_url: str = "https://github.com/cert-manager/cert-manager/releases/download/{version}/cert-manager.yaml"
    cert_manager_sha256: str = ""
    knative_version: str = "knative-v1.21.1"
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
    envoy_gateway_version: str = "v1.8.1"
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
    # Gateway autoscaling: CPU utilisation and per-pod request rate (the latter needs a metrics adapter).
    gateway_min_replicas: int = Field(2, ge=1)
    gateway_max_replicas: int = Field(6, ge=1)
    gateway_target_cpu: int = Field(70, ge=1, le=100)
    gateway_target_rps: int = Field(50, ge=1)
    # Per-component resource overrides, e.g. {gateway = {cpu = "500m", memory = "512Mi"}}: requests;
    # limits are twice the CPU and the same memory.
    resources: dict[str, dict[str, str]] = {}

    @field_validator("resources")
    @classmethod
    def _known_components(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        components = {"gateway", "predictor", "drift", "mlflow", "prometheus", "grafana", "jaeger", "loki", "promtail"}
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
    gpu_enabled: bool = False
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


class Config(Section):
    project: ProjectConfig = ProjectConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    registry: RegistryConfig = RegistryConfig()
    serving: ServingConfig = ServingConfig()
    gateway: GatewayConfig = GatewayConfig()
    drift: DriftConfig = DriftConfig()
    observability: ObservabilityConfig = ObservabilityConfig()
    local: LocalConfig = LocalConfig()
    kubernetes: KubernetesConfig = KubernetesConfig()
    images: ImagesConfig = ImagesConfig()
    eks: EksConfig = EksConfig()
    canary: CanaryConfig = CanaryConfig()

    @model_validator(mode="after")
    def _calls_fit_the_queue(self) -> "Config":
        # The predictor admits a call only if all its texts fit its queue: a call it can never admit
        # would turn every coalesced burst into 503s.
        if self.gateway.texts_per_call > self.serving.max_queue:
            raise ValueError(f"[gateway].texts_per_call ({self.gateway.texts_per_call}) is more than "
                             f"[serving].max_queue ({self.serving.max_queue}): the predictor would refuse every "
                             "full coalesced call; lower texts_per_call or raise max_queue")
        return self

    _root: Path = PrivateAttr(default_factory=Path.cwd)
    _file: Path | None = PrivateAttr(default=None)
    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def root(self) -> Path:
        """The project directory: where mlops.toml lives; relative paths resolve against it."""
        return self._root

    @property
    def file(self) -> Path | None:
        return self._file

    def path(self, value: str | os.PathLike[str]) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self._root / p

    @property
    def state_dir(self) -> Path:
        return self.path(self.project.state_dir)

    def source(self, dotted: str) -> str:
        return self._sources.get(dotted, "default")

    def sources(self) -> dict[str, str]:
        return {key: self.source(key) for key in flatten(self.model_dump())}

    def with_overrides(self, overrides: Mapping[str, Any]) -> "Config":
        """A copy with flag values applied (None means 'flag not given')."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if not given:
            return self
        data = self.model_dump()
        for dotted, value in given.items():
            _set_dotted(data, dotted, value)
        new = _validate(data, origin="command-line flags")
        new._root, new._file = self._root, self._file
        new._sources = {**self._sources, **{k: "flag" for k in given}}
        return new


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def find_config_file(start: Path | None = None) -> Path | None:
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / CONFIG_FILENAME
        if candidate.is_file():
            return candidate
    return None


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    env = os.environ if env is None else env
    explicit = path or env.get("MLOPS_CONFIG")
    if explicit:
        file = Path(explicit).expanduser()
        if not file.is_file():
            raise ConfigError(
                f"config file not found: {file}",
                hint="pass an existing file with --config, or unset MLOPS_CONFIG",
            )
    else:
        file = find_config_file()

    data: dict[str, Any] = {}
    sources: dict[str, str] = {}
    env_keys: set[str] = set()
    if file is not None:
        data = _read_toml(file)
        sources.update({k: f"file:{file}" for k in flatten(data)})

    for dotted, raw in _env_overrides(env).items():
        _set_dotted(data, dotted, _parse_env_value(raw))
        sources[dotted] = f"env:{ENV_PREFIX}{dotted.replace('.', '__').upper()}"
        env_keys.add(dotted)

    cfg = _validate(data, origin=str(file) if file else "defaults", env_keys=env_keys)
    cfg._root = (file.parent if file else Path.cwd()).resolve()
    cfg._file = file.resolve() if file else None
    cfg._sources = sources
    return cfg.with_overrides(overrides or {})


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        with file.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: invalid TOML: {exc}", hint="fix the syntax at that line") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not valid UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None


def _env_overrides(env: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX):].partition("__")
        if section and key:
            out[f"{section.lower()}.{key.lower()}"] = value
    return out


def _parse_env_value(raw: str) -> Any:
    # Lists come as JSON (MLOPS_EKS__INSTANCE_TYPES='["m6i.large"]'); everything else is left for
    # pydantic's lax coercion ("5" -> 5, "true" -> True).
    stripped = raw.strip()
    if stripped.startswith("["):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return raw
    return raw


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    section, _, key = dotted.partition(".")
    target = data.setdefault(section, {})
    if not isinstance(target, dict):
        raise ConfigError(f"[{section}] must be a table, got {target!r}")
    target[key] = value


def _validate(data: dict[str, Any], *, origin: str, env_keys: set[str] | None = None) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin, env_keys or set())) from None


def _describe(exc: ValidationError, origin: str, env_keys: set[str]) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"])
        where = f"env {ENV_PREFIX}{field.replace('.', '__').upper()}" if field in env_keys else origin
        if err["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key `{field}` (check the spelling; `mlops config show` lists every key)")
        elif not field:  # a rule across sections: its message names the keys
            lines.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"{where}: `{field}` = {err.get('input')!r}: {err['msg'].lower()}")
    return "invalid configuration\n  " + "\n  ".join(lines)

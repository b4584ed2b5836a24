"""The sections of `mlops.toml` that every target shares: [project], [data], [train], [registry], [serving],
[gateway], [drift], [observability], [local], [canary] and [images]. Each field's comment is its
documentation; a rule within one section is a validator here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from .values import AliasName, DataSourceName, Duration, HttpUrl, Section, TargetName, TrackingUri


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
    # Beside mlops.toml, not inside state_dir: `mlops down --purge` deletes the state dir, and a remote is
    # where the data is kept safe from exactly that.
    remote: str = ".dvc-remote"
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
    champion_alias: AliasName = "champion"
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
    # "cuda": the predictor asks Kubernetes for one GPU (`nvidia.com/gpu: 1`); on EKS that, and only that,
    # makes `up` create the GPU node group ([eks].gpu_*).
    device: Literal["cpu", "cuda"] = "cpu"
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
    # Testing the canary gate only: the predictor answers this share of predict calls 500 on purpose
    # (models/predictor_metrics.py). A new value makes a new revision, so `deploy --canary` with it set
    # is a deliberately failing canary (the e2e run's rollback step).
    fault_error_share: float = Field(0.0, ge=0, le=1)

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
    # POST /feedback: labels for logged predictions, fsynced before the answer, rotated like the prediction log.
    feedback_log: str = ".mlops/feedback.jsonl"
    # Predictions /feedback can name: the newest this many request ids (older ones answer 404).
    feedback_index_size: int = Field(200_000, ge=1)


class DriftConfig(Section):
    window: Duration = "24h"
    min_samples: int = Field(30, ge=1)
    interval: Duration = "5m"
    drift_share: float = Field(0.5, gt=0, le=1)
    reference_samples: int = Field(1000, ge=10)
    # At most this many predictions of the window are compared (a uniform random sample; the report
    # says how many): memory stays bounded however many the window holds.
    sample_size: int = Field(5000, ge=30)


class FeedbackConfig(Section):
    """Labelled feedback: `mlops feedback import` and the live quality `mlops monitor` reports."""

    import_max_bytes: int = Field(20_000_000, ge=1)    # a larger file is refused before it is read
    window: Duration = "24h"                           # live quality over this much recent feedback
    min_labels: int = Field(30, ge=1)                  # fewer labels for a version: no live numbers
    accuracy_floor: float = Field(0.7, ge=0, le=1)     # live accuracy below this fires the alert and the loop


class LoopConfig(Section):
    """`mlops retrain` and `mlops loop`: drift or live accuracy -> retrain -> gate -> canary -> promote."""

    min_labels: int = Field(200, ge=10)           # labelled feedback texts needed before a retrain
    fresh_share: float = Field(0.3, gt=0, lt=1)   # share of them held out as the fresh test slice
    gate_metric: Literal["accuracy", "macro_f1"] = "macro_f1"
    max_test_drop: float = Field(0.02, ge=0, le=1)  # the challenger may lose at most this on the original test split
    on_drift: bool = True                         # dataset drift triggers a retrain
    on_accuracy_floor: bool = True                # live accuracy under [feedback].accuracy_floor triggers one
    challenger_alias: AliasName = "challenger"
    canary_percent: int = Field(10, ge=1, le=99)
    observe: Duration = "10m"                     # the canary watch, as `deploy --observe`
    schedule: Duration | Literal[""] = ""         # `mlops loop` (without --once) runs this often; "" = off


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
    loop_port: int = Field(8086, ge=1, le=65535)      # the scheduled loop's /healthz (only with [loop].schedule)
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
    # The canary is judged on its own revision's requests (monitoring/canary_statistics.py): the sample it
    # needs follows from the four numbers below (208 requests with the defaults).
    max_error_rate: float = Field(0.01, gt=0, lt=1)   # the error budget: a canary failing at most this often is healthy
    bad_error_rate: float = Field(0.05, gt=0, lt=1)   # a canary failing this often must not be promoted
    false_promotion: float = Field(0.05, gt=0, lt=0.5)  # at most this share of bad canaries promoted
    false_rollback: float = Field(0.05, gt=0, lt=0.5)   # at most this share of healthy canaries rolled back
    max_p99_s: float = Field(1.0, gt=0)               # the canary's p99 latency of prediction requests
    min_requests: int = Field(0, ge=0)                # a floor on the canary's requests, above what the budget needs
    interval_s: float = Field(30.0, gt=0)             # how often to look during the window
    max_window_s: float = Field(3600.0, gt=0)         # how long the watch may go past --observe for its sample
    probe_rps: float = Field(0.0, ge=0)               # synthetic predictions per second while the sample is short

    @model_validator(mode="after")
    def _rates_ordered(self) -> "CanaryConfig":
        if self.bad_error_rate <= self.max_error_rate:
            raise ValueError(f"bad_error_rate ({self.bad_error_rate}) must be above max_error_rate "
                             f"({self.max_error_rate}): the gate tells the two apart")
        return self


class ImagesConfig(Section):
    """Where our images (gateway, drift, predictor, mlflow) come from: see charts/image_refs.py.

    `registry` is one the user owns (ECR on EKS, ghcr.io/<org>, ...). On kind, `kind.local` (or
    `dev.local`) images are side-loaded with `kind load` and Knative skips its digest resolution for
    them (`registries-skipping-tag-resolving` in Knative's config-deployment).
    """

    registry: str = Field("kind.local", pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9._-]+)*$")
    tag: str = Field("", pattern=r"^([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$")   # empty: the package version
    record: str = ""   # empty: <state_dir>/images.json (written by `mlops images build --push`)
    # Pushed images are one index for these platforms (docker buildx; the release builds amd64 and arm64).
    platforms: str = Field("", pattern=r"^([a-z0-9]+/[a-z0-9]+(/v[0-9])?(,[a-z0-9]+/[a-z0-9]+(/v[0-9])?)*)?$")
    cache_dir: str = ""   # buildx's local layer cache (CI restores and saves it); empty: none

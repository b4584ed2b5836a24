"""The artifact a predictor serves for a registered version: the fp32 classifier, or its int8 ONNX export.

``[serving].runtime = "onnx-int8"`` (the default) serves the version's ONNX export on onnxruntime:
produced the first time the version is deployed, evaluated on the test split, logged to the version's
MLflow run beside the fp32 weights (artifact ``onnx-int8/``, with ``evaluation.json``) and tagged on the
version (``onnx_int8``, ``onnx_int8_accuracy``, ``onnx_int8_macro_f1``), so later deploys, on any machine,
download it instead of exporting again. ``"torch"`` serves the fp32 classifier directory as before.

A cluster predictor reads its directory from the artifact store itself (KServe's storageUri):
``served_artifact_uri`` names it, exporting first when the version has no export yet.

Example::

    model_dir = served_model_dir(config, ref, registry.local_model_dir(config, ref), reporter)
    uri = served_artifact_uri(config, ref, reporter)   # what an InferenceService's storageUri names
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..common.errors import MlopsError
from ..common.progress import SILENT, Reporter
from ..config.settings import Config

RUNTIME_DIR = "onnx-int8"
RUNTIME_TAG = "onnx_int8"
EVALUATION_FILE = "evaluation.json"


def served_model_dir(config: Config, ref: Any, classifier_dir: Path, reporter: Reporter = SILENT) -> Path:
    if config.serving.runtime == "torch":
        return classifier_dir
    from models.onnx_classifier import is_runtime_dir

    target = config.state_dir / "models" / ref.name / str(ref.version) / RUNTIME_DIR
    if is_runtime_dir(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the target, then renamed: a predictor never loads a half-written export.
    staging = Path(tempfile.mkdtemp(prefix=f".{RUNTIME_DIR}-", dir=target.parent))
    try:
        uri = _known_export(config, ref)
        if uri:
            reporter.start("runtime", f"downloading the {RUNTIME_DIR} export of version {ref.version}")
            _download(config, uri, staging)
            built = staging / RUNTIME_DIR
        else:
            reporter.start("runtime", f"exporting version {ref.version} to ONNX int8 (once per version)")
            built = produce(config, ref, classifier_dir, staging / RUNTIME_DIR, reporter)
        if not is_runtime_dir(built):
            raise MlopsError(f"the {RUNTIME_DIR} artifact of version {ref.version} ({uri}) is incomplete",
                             hint=f'delete the version\'s "{RUNTIME_TAG}" tag to export again, or set [serving].runtime = "torch"')
        if target.exists():
            shutil.rmtree(target)
        built.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    reporter.finish("runtime", RUNTIME_DIR)
    return target


def served_artifact_uri(config: Config, ref: Any, reporter: Reporter = SILENT) -> str:
    """The artifact-store URI of the directory a cluster predictor serves for `ref` (resolved by
    registry.resolve_version, so `ref.location` is where the logged model's files are).

    torch: the classifier inside the logged model. onnx-int8: the export in the version's run, logged
    and tagged here first when the version has none (once per version: the tag is the record). The two
    live apart in MLflow 3.17: a run's artifacts under `<experiment>/<run_id>/artifacts`, a logged
    model's under `<experiment>/models/<model_id>/artifacts` (mlflow/store/tracking/sqlalchemy_store.py,
    create_run and create_logged_model), so the export is found through the run, not the model.
    """
    from ..adapters import mlflow_tracking

    if config.serving.runtime == "torch":
        return f"{ref.location.rstrip('/')}/artifacts/{mlflow_tracking.CLASSIFIER_ARTIFACT}"
    uri = _known_export(config, ref)
    if not uri:
        from . import versions as registry

        classifier_dir = registry.local_model_dir(config, ref)
        reporter.start("runtime", f"exporting version {ref.version} to ONNX int8 (once per version)")
        with tempfile.TemporaryDirectory(prefix=f".{RUNTIME_DIR}-", dir=classifier_dir.parent) as staging:
            produce(config, ref, classifier_dir, Path(staging) / RUNTIME_DIR, reporter)
        reporter.finish("runtime", RUNTIME_DIR)
        uri = f"runs:/{ref.run_id}/{RUNTIME_DIR}"
    run_id, _, path = uri.removeprefix("runs:/").partition("/")
    if not uri.startswith("runs:/") or not run_id or not path:
        raise MlopsError(f"version {ref.version}'s {RUNTIME_TAG} tag {uri!r} is not a runs:/<run_id>/<path> URI",
                         hint='delete the tag to export again, or set [serving].runtime = "torch"')
    return f"{mlflow_tracking.get_run(config, run_id).info.artifact_uri.rstrip('/')}/{path}"


def _known_export(config: Config, ref: Any) -> str | None:
    """The version's export, or that of another version of the same logged model (`register --force`
    registers a run again): the export lives in the run's artifacts (`runs:/<run_id>/onnx-int8`), so a
    sibling's is this version's too, and exporting it again cost ~40 s for the same file. The sibling's
    tags are copied onto this version, so the next deploy finds them on the version itself."""
    uri = (ref.tags or {}).get(RUNTIME_TAG)
    if uri or not ref.run_id:
        return uri
    from ..adapters import mlflow_tracking

    client = mlflow_tracking.client(config)
    for sibling in client.search_model_versions(f"name = '{ref.name}' and run_id = '{ref.run_id}'"):
        tags = dict(sibling.tags or {})
        if str(sibling.version) != str(ref.version) and sibling.source == ref.source and tags.get(RUNTIME_TAG):
            for key, value in tags.items():
                if key.startswith(RUNTIME_TAG):
                    client.set_model_version_tag(ref.name, str(ref.version), key, value)
            return tags[RUNTIME_TAG]
    return None


def predictor_args(config: Config, cpu: str | None = None) -> list[str]:
    """The `python -m models.predictor` flags that carry [serving]'s runtime and batching settings.

    `cpu`: the container's CPU request (Kubernetes quantity), for `[serving].threads = 0`: in a pod,
    os.cpu_count() is the node's cores, not the pod's share, and that many model threads on a 1-CPU
    request would mostly wait on CFS throttling.
    """
    serving = config.serving
    args = ["--runtime", serving.runtime, "--batch-size", str(serving.batch_size),
            "--max-wait-ms", f"{serving.max_wait_ms:g}", "--max-queue", str(serving.max_queue),
            "--latency-budget-ms", f"{serving.latency_budget_ms:g}", "--http-nice", str(serving.http_nice)]
    if serving.fault_error_share:
        args += ["--fault-error-share", f"{serving.fault_error_share:g}"]
    threads = serving.threads or (_whole_cpus(cpu) if cpu else 0)
    return args + (["--threads", str(threads)] if threads else [])


def _whole_cpus(quantity: str) -> int:
    millis = int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)
    return max(1, millis // 1000)


def produce(config: Config, ref: Any, classifier_dir: Path, out_dir: Path, reporter: Reporter = SILENT) -> Path:
    """Export, evaluate on the test split (when the project has one), log to the version's run and tag it."""
    from models.onnx_export import export_int8

    try:
        export_int8(classifier_dir, out_dir)
    except FileNotFoundError as exc:
        raise MlopsError(f"cannot export version {ref.version} to ONNX: {exc}",
                         hint='set [serving].runtime = "torch" to serve the fp32 weights') from None
    evaluation = evaluate_runtime(config, out_dir)
    if evaluation is None:
        reporter.warn(f"no test split here: the {RUNTIME_DIR} export of version {ref.version} is logged unevaluated")
    else:
        (out_dir / EVALUATION_FILE).write_text(json.dumps(evaluation, indent=2) + "\n")
    _log(config, ref, out_dir, evaluation)
    return out_dir


def evaluate_runtime(config: Config, runtime_dir: Path) -> dict[str, Any] | None:
    from models.onnx_classifier import OnnxClassifier

    from ..common.errors import PreflightError
    from ..data.dataset import read_split
    from ..training.evaluation import evaluate

    try:
        examples = read_split(config, "test")
    except PreflightError:
        return None
    result = evaluate(OnnxClassifier.load(runtime_dir, config.serving.threads), examples,
                      batch_size=config.serving.batch_size)
    return {"runtime": RUNTIME_DIR, "n": result.n, "accuracy": result.metrics["accuracy"],
            "macro_f1": result.metrics["macro_f1"]}


def _log(config: Config, ref: Any, runtime_dir: Path, evaluation: dict[str, Any] | None) -> None:
    from ..adapters import mlflow_tracking

    client = mlflow_tracking.client(config)
    client.log_artifacts(ref.run_id, str(runtime_dir), RUNTIME_DIR)
    client.set_model_version_tag(ref.name, str(ref.version), RUNTIME_TAG, f"runs:/{ref.run_id}/{RUNTIME_DIR}")
    for key in ("accuracy", "macro_f1"):
        if evaluation is not None:
            client.set_model_version_tag(ref.name, str(ref.version), f"{RUNTIME_TAG}_{key}", f"{evaluation[key]:.6f}")


def _download(config: Config, uri: str, dst: Path) -> None:
    from mlflow.artifacts import download_artifacts

    from ..adapters import mlflow_tracking

    mlflow_tracking.preflight(config)
    download_artifacts(artifact_uri=uri, dst_path=str(dst))

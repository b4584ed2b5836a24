"""MLflow: where runs, metrics, artifacts, logged models and the model registry live.

With no tracking server configured, MLflow runs embedded: a sqlite store at
``<state_dir>/mlflow/mlflow.db`` and artifacts under ``<state_dir>/mlflow/artifacts`` (the same store
``mlops up`` serves with ``mlflow server``). With ``[registry].tracking_uri`` or ``MLFLOW_TRACKING_URI``
pointing at a server, everything goes over HTTP, after a preflight that fails in seconds.

Example::

    uri = preflight(config)                    # raises PreflightError naming the URL and the fix
    run = start_run(config, "train-2026...", tags={"data_fingerprint": "..."})
    run.log_metrics({"train_loss": 0.4}, step=1)
    run.end("FINISHED")
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import mlflow
import mlflow.pyfunc
import pandas as pd

from ..common.errors import NotFoundError, UnreachableError
from ..config.settings import Config

# Pinned into every logged model, so MLflow never has to guess (guessing loads the model in a subprocess).
_MODEL_PACKAGES = ("mlflow", "torch", "transformers", "tokenizers", "safetensors", "numpy", "pandas")
MODEL_ARTIFACT_PATH = "model"
CLASSIFIER_ARTIFACT = "classifier"
MODEL_LOGGED_TAG = "mlops.model_logged"


def embedded_store(config: Config) -> tuple[str, str]:
    root = config.state_dir / "mlflow"
    return f"sqlite:///{(root / 'mlflow.db').resolve()}", str((root / "artifacts").resolve())


def tracking_uri(config: Config) -> str:
    # MLFLOW_TRACKING_URI is MLflow's own convention; honoured so existing setups keep working.
    return config.registry.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "") or embedded_store(config)[0]


def is_embedded(config: Config) -> bool:
    return tracking_uri(config) == embedded_store(config)[0]


def preflight(config: Config) -> str:
    """Check the tracking store answers, then point MLflow at it. Returns the URI."""
    uri = tracking_uri(config)
    # The CLI draws its own progress; MLflow's tqdm bars would interleave with it on stderr.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow's client reads these on every request (mlflow/environment_variables.py,
    # MLFLOW_HTTP_REQUEST_TIMEOUT / MLFLOW_HTTP_REQUEST_MAX_RETRIES): the hop's timeout comes from config.
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(config.registry.request_timeout_s)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(config.registry.request_retries)
    if uri.startswith(("http://", "https://")):
        _probe_server(uri, config.registry.connect_timeout_s)
    elif is_embedded(config):
        Path(embedded_store(config)[1]).mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def _probe_server(uri: str, timeout_s: float) -> None:
    import httpx

    hint = (f"start it (`mlops up`, or `mlflow server --host 127.0.0.1 --port {_port(uri)}`), fix "
            "[registry].tracking_uri / MLFLOW_TRACKING_URI, or set tracking_uri = \"\" for the embedded store")
    try:
        response = httpx.get(uri.rstrip("/") + "/health", timeout=timeout_s)
    except httpx.TimeoutException:
        raise UnreachableError(f"MLflow tracking server {uri} did not answer within {timeout_s:g}s", hint=hint) from None
    except httpx.HTTPError as exc:
        raise UnreachableError(f"MLflow tracking server {uri} is unreachable: {exc}", hint=hint) from None
    if response.status_code >= 400:
        raise UnreachableError(f"MLflow tracking server {uri} answered /health with HTTP {response.status_code}",
                             hint=hint)


def _port(uri: str) -> str:
    from urllib.parse import urlparse

    return str(urlparse(uri).port or 5000)


def client(config: Config):
    from mlflow.tracking import MlflowClient

    uri = preflight(config)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(config: Config) -> str:
    c = client(config)
    name = config.registry.experiment
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    # Embedded: artifacts next to the sqlite file, not in ./mlruns of whatever directory we run from.
    location = Path(embedded_store(config)[1]).as_uri() if is_embedded(config) else None
    return c.create_experiment(name, artifact_location=location)


# -- runs ----------------------------------------------------------------------------------------

class TrackedRun:
    """One MLflow run. Metrics are buffered and written in batches (one request per flush, not per step)."""

    def __init__(self, config: Config, run_id: str) -> None:
        self.client = client(config)
        self.run_id = run_id
        self.uri = tracking_uri(config)
        self._buffer: list[Any] = []

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._buffer.extend(Metric(k, float(v), now, step) for k, v in metrics.items())

    def flush(self) -> None:
        while self._buffer:
            chunk, self._buffer = self._buffer[:500], self._buffer[500:]
            self.client.log_batch(self.run_id, metrics=chunk)

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items() if v is not None])

    def log_artifacts(self, paths: Iterable[Path], artifact_path: str | None = None) -> None:
        for p in paths:
            self.client.log_artifact(self.run_id, str(p), artifact_path)

    def log_model(self, classifier_dir: Path, labels: list[str], example_texts: list[str]) -> str:
        """Log the classifier as a pyfunc at artifact path `model`; returns the model URI."""
        from mlflow.models import ModelSignature
        from mlflow.types import ColSpec, Schema

        outputs = [ColSpec("string", "label"), ColSpec("double", "confidence")]
        outputs += [ColSpec("double", f"p_{label}") for label in labels]
        signature = ModelSignature(inputs=Schema([ColSpec("string", "text")]), outputs=Schema(outputs))
        # MLflow's notes on cloudpickle and input-example validation are noise for our users.
        pyfunc_log = logging.getLogger("mlflow.pyfunc")
        level = pyfunc_log.level
        pyfunc_log.setLevel(logging.ERROR)
        try:
            info = self._log_model(classifier_dir, signature, example_texts)
        finally:
            pyfunc_log.setLevel(level)
        self.set_tags({MODEL_LOGGED_TAG: "true"})
        return info.model_uri

    def _log_model(self, classifier_dir: Path, signature, example_texts: list[str]):
        from mlflow.models import Model

        # Model.log with an explicit run_id (no fluent "active run" whose exit would end our run) and a
        # logged model created in the run's experiment (left alone, MLflow files it under experiment 0).
        run = self.client.get_run(self.run_id)
        logged = self.client.create_logged_model(
            run.info.experiment_id, name=MODEL_ARTIFACT_PATH, source_run_id=self.run_id,
            params={k: str(v) for k, v in run.data.params.items()})
        return Model.log(
            artifact_path=None,
            name=MODEL_ARTIFACT_PATH,
            flavor=mlflow.pyfunc,
            run_id=self.run_id,
            python_model=SentimentPyfunc(),
            artifacts={CLASSIFIER_ARTIFACT: str(classifier_dir)},
            signature=signature,
            input_example=pd.DataFrame({"text": example_texts}),
            pip_requirements=model_requirements(),
            model_id=logged.model_id,
        )

    def end(self, status: str) -> None:
        """FINISHED, FAILED or KILLED. Buffered metrics are written first when the store still answers."""
        try:
            self.flush()
        finally:
            # Over HTTP, MLflow prints the run's UI link on stdout; stdout is for results (--json).
            with contextlib.redirect_stdout(sys.stderr):
                self.client.set_terminated(self.run_id, status=status)


def start_run(config: Config, run_name: str, tags: dict[str, Any]) -> TrackedRun:
    exp = experiment_id(config)
    run = client(config).create_run(exp, run_name=run_name, tags={k: str(v) for k, v in tags.items() if v is not None})
    return TrackedRun(config, run.info.run_id)


def model_requirements() -> list[str]:
    reqs = []
    for name in _MODEL_PACKAGES:
        try:
            reqs.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            reqs.append(name)
    return reqs


class SentimentPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow's view of the classifier: a DataFrame with a `text` column in; label, confidence, p_<label> out."""

    def load_context(self, context) -> None:
        from models.classifier import SentimentClassifier

        self.classifier = SentimentClassifier.load(context.artifacts[CLASSIFIER_ARTIFACT])

    # A DataFrame hint: MLflow then skips type-hint validation (the explicit signature covers it) quietly.
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if isinstance(model_input, pd.DataFrame):
            texts = [str(t) for t in model_input["text"]]
        elif isinstance(model_input, dict):
            texts = [str(t) for t in model_input["text"]]
        else:
            texts = [str(t) for t in model_input]
        proba = self.classifier.predict_proba(texts)
        labels = self.classifier.labels
        frame = pd.DataFrame({f"p_{label}": proba[:, i] for i, label in enumerate(labels)})
        frame.insert(0, "confidence", proba.max(axis=1))
        frame.insert(0, "label", [labels[i] for i in proba.argmax(axis=1)])
        return frame


# -- lookups the registry needs ------------------------------------------------------------------

def _newest_run(config: Config, filter_string: str):
    """The newest run of the project's experiment that matches, or None."""
    c = client(config)
    exp = c.get_experiment_by_name(config.registry.experiment)
    runs = [] if exp is None else c.search_runs([exp.experiment_id], filter_string=filter_string,
                                                  order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def latest_model_run(config: Config) -> str:
    run = _newest_run(config, f"tags.`{MODEL_LOGGED_TAG}` = 'true' and attributes.status = 'FINISHED'")
    if run is None:
        raise NotFoundError(
            f"no finished training run with a logged model in experiment {config.registry.experiment!r} "
            f"at {tracking_uri(config)}",
            hint="run `mlops train --log` first, or name one with --run-id")
    return run.info.run_id


def newest_tagged_metric(config: Config, tag: str, value: str, metric: str) -> float | None:
    """`metric` of the newest run tagged `tag = value` (None: no such run, or it did not log that metric)."""
    run = _newest_run(config, f"tags.`{tag}` = '{value}'")
    return run.data.metrics.get(metric) if run else None


def get_run(config: Config, run_id: str):
    from mlflow.exceptions import MlflowException

    try:
        return client(config).get_run(run_id)
    except MlflowException:
        raise NotFoundError(f"MLflow run {run_id} not found at {tracking_uri(config)}",
                            hint="`mlops models list` and the MLflow UI show existing runs") from None


def download_model(model_uri: str, dst: Path) -> Path:
    from mlflow.artifacts import download_artifacts

    dst.mkdir(parents=True, exist_ok=True)
    return Path(download_artifacts(artifact_uri=model_uri, dst_path=str(dst)))

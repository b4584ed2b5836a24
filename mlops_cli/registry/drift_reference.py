"""The drift reference of a model version: what its inputs and outputs looked like on training data.

Registering a version computes, for a sample of the training examples, the same per-text features the
gateway logs for live traffic (``models.text_features``) plus the version's own predicted label and
confidence. The table is stored as a CSV artifact of the version's MLflow run and the model version is
tagged ``drift_reference`` with its artifact URI, so every deployed version carries its own baseline.

Example::

    attach_reference(cfg, ref, classifier_dir, train_examples)   # called by registry.register
    frame = load_reference(cfg, ref)    # columns: text_length, word_count, oov_share, label, confidence
"""

from __future__ import annotations

import hashlib
import random
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ..common.atomic_file import write_atomically
from ..common.errors import DataError, NotFoundError
from ..config.settings import Config

if TYPE_CHECKING:
    import pandas as pd

REFERENCE_TAG = "drift_reference"
ARTIFACT_DIR = "drift_reference"
ARTIFACT_FILE = "reference.csv"
NUMERIC_COLUMNS = ("text_length", "word_count", "oov_share", "confidence")
CATEGORICAL_COLUMNS = ("label",)
COLUMNS = ("text_length", "word_count", "oov_share", "label", "confidence")


def _text_of(example: Any) -> str:
    """Examples come as dataset.Example objects, {"text": ...} mappings or plain strings."""
    if isinstance(example, str):
        return example
    if isinstance(example, dict):
        return str(example["text"])
    return str(example.text)


def sample_texts(examples: Iterable[Any], limit: int, seed: int) -> list[str]:
    """At most `limit` texts, drawn with a fixed seed so the same data gives the same reference."""
    texts = [_text_of(e) for e in examples]
    if len(texts) > limit:
        texts = random.Random(seed).sample(texts, limit)
    return texts


def compute_reference(classifier_dir: Path, texts: list[str], batch_size: int = 32,
                      prepare: Callable[[str], str] | None = None) -> "pd.DataFrame":
    """Features + the classifier's predictions for each text: one row per text, the columns in COLUMNS.

    `prepare` is what the gateway does to a text before the predictor sees it; the reference must see
    texts the same way, or HTML entities and truncation alone would read as drift.
    """
    import pandas as pd

    from models.classifier import SentimentClassifier
    from models.text_features import load_vocab, text_features

    if not texts:
        raise DataError("cannot build a drift reference from zero training examples",
                        hint="check the training split (`mlops data status`)")
    if prepare is not None:
        texts = [prepare(t) for t in texts]
    classifier = SentimentClassifier.load(classifier_dir)
    vocab = load_vocab(classifier_dir)
    proba = classifier.predict_proba(texts, batch_size=batch_size)
    rows = []
    for text, row in zip(texts, proba):
        feats = text_features(text, vocab)
        best = int(row.argmax())
        rows.append({**feats, "label": classifier.labels[best], "confidence": float(row[best])})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def attach_reference(config: Config, ref: Any, classifier_dir: Path, examples: list) -> None:
    """Compute the reference for model version `ref`, log it to the version's run, tag the version."""
    from ..adapters import mlflow_tracking

    from ..common.text_policy import prepare_text

    texts = sample_texts(examples, config.drift.reference_samples, config.data.seed)
    frame = compute_reference(Path(classifier_dir), texts, batch_size=config.serving.batch_size,
                              prepare=lambda t: prepare_text(t, config.gateway.truncation, config.gateway.max_words))
    client = mlflow_tracking.client(config)
    with tempfile.TemporaryDirectory(prefix="mlops-drift-ref-") as tmp:
        path = Path(tmp) / ARTIFACT_FILE
        frame.to_csv(path, index=False)
        client.log_artifact(ref.run_id, str(path), ARTIFACT_DIR)
    uri = f"runs:/{ref.run_id}/{ARTIFACT_DIR}/{ARTIFACT_FILE}"
    client.set_model_version_tag(ref.name, str(ref.version), REFERENCE_TAG, uri)
    _cache_path(config, ref, uri).unlink(missing_ok=True)


def _cache_path(config: Config, ref: Any, uri: str) -> Path:
    # Keyed by the artifact URI too: another tracking server can hold a different "version 3".
    digest = hashlib.sha256(uri.encode()).hexdigest()[:12]
    return config.state_dir / "drift" / "references" / str(ref.name) / f"{ref.version}-{digest}.csv"


def reference_uri(config: Config, ref: Any) -> str:
    """The artifact URI stored on the version's tag (fresh from the registry when `ref.tags` lacks it)."""
    uri = (getattr(ref, "tags", None) or {}).get(REFERENCE_TAG)
    if not uri:
        from ..adapters import mlflow_tracking

        version = mlflow_tracking.client(config).get_model_version(ref.name, str(ref.version))
        uri = (version.tags or {}).get(REFERENCE_TAG)
    if not uri:
        raise NotFoundError(
            f"model {ref.name} version {ref.version} has no drift reference (no `{REFERENCE_TAG}` tag)",
            hint="versions created by `mlops register` get one; register the run again to add it")
    return uri


def load_reference(config: Config, ref: Any) -> "pd.DataFrame":
    """The reference table of version `ref`, downloaded once into the state dir and reused after."""
    uri = reference_uri(config, ref)
    cached = _cache_path(config, ref, uri)
    if not cached.is_file():
        from mlflow.artifacts import download_artifacts

        from ..adapters import mlflow_tracking

        mlflow_tracking.preflight(config)
        with tempfile.TemporaryDirectory(prefix="mlops-drift-ref-") as tmp:
            local = Path(download_artifacts(artifact_uri=uri, dst_path=tmp))
            write_atomically(cached, local.read_bytes())
    return read_reference_file(cached)


def read_reference_file(path: Path) -> "pd.DataFrame":
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"drift reference {path} is unreadable: {exc}",
                        hint=f"delete {path} to download it again") from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"drift reference {path} lacks column(s) {', '.join(missing)}",
                        hint=f"delete {path} and re-register the version")
    frame = frame[list(COLUMNS)].copy()
    frame["label"] = frame["label"].astype(str)
    for col in NUMERIC_COLUMNS:
        frame[col] = frame[col].astype(float)
    return frame

"""`mlops evaluate`: a registered version scored on the current test split exactly as training scores a
fresh model, beside the TF-IDF baseline fitted on the same fit rows.
"""

from __future__ import annotations

from typing import Any

from ..config.settings import Config
from ..data.dataset import carve_validation, read_split
from ..training import baseline as tfidf
from ..training.evaluation import Evaluation, compare, evaluate, score_baseline
from . import versions as registry


def evaluate_registered(config: Config, version: str | None = None,
                        alias: str | None = None) -> tuple[Any, Evaluation, dict[str, float]]:
    """Evaluate a registered version on the current test split, exactly as training does, beside the baseline
    fitted on the same fit rows. Returns (ref, result, comparison)."""
    from models.classifier import SentimentClassifier

    ref = registry.resolve_version(config, version=version, alias=alias)
    classifier = SentimentClassifier.load(registry.local_model_dir(config, ref))
    fit_rows, _ = carve_validation(read_split(config, "train"), config.data.validation_size, config.data.seed)
    reference = tfidf.fit(fit_rows, classifier.labels, config.train.seed)
    test_set = read_split(config, "test")
    out_dir = config.state_dir / "eval" / f"{ref.name}-v{ref.version}"
    result = evaluate(classifier, test_set, out_dir, batch_size=config.serving.batch_size)
    return ref, result, compare(result, score_baseline(reference, test_set))

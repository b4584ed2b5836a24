"""The classifier a predictor serves, loaded and warmed up; imports no server (and torch only for torch).

    clf = load_classifier(Path("/mnt/models"), "auto", threads=2)   # OnnxClassifier or SentimentClassifier
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .onnx_classifier import OnnxClassifier, is_runtime_dir

RUNTIMES = ("auto", "onnx-int8", "torch")
WARM_UP_TEXT = "a first pass before the first request: buffers allocated, tokenizer threads started"


def load_classifier(model_dir: Path, runtime: str = "auto", threads: int = 0):
    """The classifier a predictor serves; torch is imported only for the torch runtime."""
    if runtime == "onnx-int8" or (runtime == "auto" and is_runtime_dir(model_dir)):
        return OnnxClassifier.load(model_dir, threads)
    if threads:
        import torch

        torch.set_num_threads(threads)
    from .classifier import SentimentClassifier

    return SentimentClassifier.load(model_dir)


def warm_up(classifier: Any) -> Any:
    """One prediction before the server says ready: the first pass allocates onnxruntime's buffers and
    starts the tokenizer's threads, which the first user's request would otherwise wait for."""
    classifier.predict_proba([WARM_UP_TEXT])
    return classifier

"""The predictor's KServe side: the Model with V1 and V2 predict, load shedding, and the HTTP thread's priority.

`models.predictor` (the entry point) imports this module while the model itself loads in another thread:
importing KServe (FastAPI, pandas, the Kubernetes client...) is most of a cold start, and it needs one
core while onnxruntime's session needs the other.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput

from mlops_cli.common.logging_setup import request_id_var

from .batcher import MicroBatcher, Overloaded
from .served_classifier import load_classifier, warm_up
from .text_features import load_vocab, text_features


class SentimentPredictor(Model):
    def __init__(self, name: str, model_dir: Path, version: str, batch_size: int = 32, *, runtime: str = "auto",
                 threads: int = 0, max_wait_ms: float = 5.0, max_queue: int = 1024, latency_budget_ms: float = 0.0) -> None:
        super().__init__(name)
        self.model_dir = Path(model_dir)
        self.version = version
        self.batch_size = batch_size
        self.runtime = runtime
        self.threads = threads
        self.classifier: Any = None
        self.vocab: frozenset[str] = frozenset()
        self.batcher = MicroBatcher(self.infer, max_batch=batch_size, max_wait_ms=max_wait_ms, max_queue=max_queue,
                                    latency_budget_s=latency_budget_ms / 1000.0)

    def load(self, classifier: Any = None) -> bool:
        """`classifier`: one loaded (and warmed up) already, by `models.predictor` while KServe imported."""
        if classifier is None:
            classifier = warm_up(load_classifier(self.model_dir, self.runtime, self.threads))
        self.classifier = classifier
        self.vocab = load_vocab(self.model_dir)
        self.ready = True
        return self.ready

    def infer(self, texts: list[str]) -> tuple[np.ndarray, list[dict[str, float]]]:
        assert self.classifier is not None, "load() first"
        probs = self.classifier.predict_proba(texts, batch_size=self.batch_size)
        # log-probabilities are logits up to a per-row constant: softmax(log p) == p exactly.
        logits = np.log(np.clip(probs, 1e-12, 1.0))
        return logits, [text_features(t, self.vocab) for t in texts]

    async def predict(self, payload: Any, headers: dict[str, str] | None = None, response_headers=None):
        # The gateway forwards its request id, so predictor log lines join the gateway's and the trace.
        request_id_var.set((headers or {}).get("x-request-id", ""))
        if isinstance(payload, InferRequest):
            return await self._predict_v2(payload)
        texts = _texts_from_v1(payload)
        logits, features = await self.batcher.submit(texts)
        labels = list(self.classifier.labels)
        return {
            "predictions": [
                {"logits": np.asarray(row).tolist(), "labels": labels, "model_version": self.version, **feat}
                for row, feat in zip(logits, features)
            ]
        }

    async def _predict_v2(self, request: InferRequest) -> InferResponse:
        tensor = request.get_input_by_name("text") or (request.inputs[0] if request.inputs else None)
        if tensor is None:
            raise InvalidInput("V2 request needs a BYTES input named 'text'")
        texts = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in tensor.as_numpy().ravel().tolist()]
        _check_texts(texts)
        rows, features = await self.batcher.submit(texts)
        logits = np.asarray(rows, dtype=np.float32)
        labels = list(self.classifier.labels)
        outputs = [
            InferOutput("logits", list(logits.shape), "FP32", logits.tolist()),
            InferOutput("labels", [len(labels)], "BYTES", labels),
            InferOutput("oov_share", [len(texts)], "FP32", [f["oov_share"] for f in features]),
        ]
        return InferResponse(
            response_id=request.id or str(uuid.uuid4()),
            model_name=self.name,
            model_version=self.version,
            infer_outputs=outputs,
        )


def _texts_from_v1(payload: Any) -> list[str]:
    instances = payload.get("instances") if isinstance(payload, dict) else None
    if not isinstance(instances, list):
        raise InvalidInput('V1 request needs {"instances": ["text", ...]}')
    texts = [i.get("text") if isinstance(i, dict) else i for i in instances]
    _check_texts(texts)
    return texts


def _check_texts(texts: list[Any]) -> None:
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise InvalidInput("every instance must be a non-empty string")


def _bind_loopback(host: str) -> None:
    # KServe's REST server hardcodes 0.0.0.0, right for a pod; on a workstation we listen on loopback only.
    import uvicorn

    original = uvicorn.Config

    class _Config(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["host"] = host
            super().__init__(*args, **kwargs)

    uvicorn.Config = _Config  # type: ignore[misc]


def yield_to_model(model: SentimentPredictor, nice: int) -> None:
    """Run the HTTP server (this thread) at a lower CPU priority than the model's threads.

    On a machine whose cores the model fills, every millisecond the server's thread takes pre-empts one
    of the model's intra-op threads, and the pass waits for it at the next barrier. At a lower priority
    the server runs in the gaps the model leaves instead (measured on 2 cores, 2026-11-27, 16 alternating
    rounds: c=32 throughput 90% -> 98% of the model-only ceiling, with the gateway niced too). Linux
    applies nice per thread: the model thread and onnxruntime's pool (created by `load()`) keep the
    process's priority; elsewhere the whole process is lowered, which changes nothing relative.
    """
    model.batcher.start_thread()
    try:
        os.nice(nice)
    except OSError:  # never fatal: a priority is an optimisation
        pass


async def _overloaded(_request: Any, exc: Overloaded):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": str(exc.retry_after_s)})



"""The KServe predictor: one registered model version behind the V1 and V2 inference protocols.

The same code runs locally (`mlops deploy`) and as an InferenceService container, where KServe's
storage initializer has put the model in /mnt/models:

    python -m models.predictor --model-dir /mnt/models --model-name sentiment --version 3

Input: V1 `{"instances": ["text", ...]}` (or `[{"text": ...}]`); V2 a BYTES tensor named `text`.
Output per text: logits, the label order, and the text's features for drift monitoring.
Softmax and the label decision are the gateway's job, so the predictor stays a pure model server.

`--runtime onnx-int8` serves an exported runtime directory (``models.onnx_export``) on onnxruntime and
never imports torch; `--runtime torch` the fp32 classifier; `auto` (the default) whichever the directory
holds. Under more load than it can serve within `--latency-budget-ms` the predictor answers 503 with
`Retry-After` at once instead of queueing without bound.
"""

from __future__ import annotations

import argparse
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput

from mlops_cli.common.logging_setup import configure_json_logging, request_id_var

from .batcher import MicroBatcher, Overloaded
from .onnx_classifier import OnnxClassifier, is_runtime_dir
from .text_features import load_vocab, text_features

RUNTIMES = ("auto", "onnx-int8", "torch")


def load_classifier(model_dir: Path, runtime: str = "auto", threads: int = 0):
    """The classifier a predictor serves; torch is imported only for the torch runtime."""
    if runtime == "onnx-int8" or (runtime == "auto" and is_runtime_dir(model_dir)):
        return OnnxClassifier.load(model_dir, threads)
    if threads:
        import torch

        torch.set_num_threads(threads)
    from .classifier import SentimentClassifier

    return SentimentClassifier.load(model_dir)


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

    def load(self) -> bool:
        self.classifier = load_classifier(self.model_dir, self.runtime, self.threads)
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.predictor", description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=os.environ.get("MLOPS_MODEL_DIR", "/mnt/models"))
    parser.add_argument("--model-name", default=os.environ.get("MLOPS_MODEL_NAME", "sentiment"))
    parser.add_argument("--version", default=os.environ.get("MLOPS_MODEL_VERSION", "0"))
    parser.add_argument("--http-port", type=int, default=int(os.environ.get("MLOPS_HTTP_PORT", "8080")))
    parser.add_argument("--host", default=os.environ.get("MLOPS_BIND_HOST", ""))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--runtime", choices=RUNTIMES, default=os.environ.get("MLOPS_SERVING_RUNTIME", "auto"))
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--max-queue", type=int, default=1024)
    parser.add_argument("--latency-budget-ms", type=float, default=0.0)
    parser.add_argument("--http-nice", type=int, default=0,
                        help="lower the HTTP server thread's CPU priority by this much (the model's threads keep theirs)")
    parser.add_argument("--log-level", default=os.environ.get("MLOPS_LOG_LEVEL", "info"))
    parser.add_argument("--fault-error-share", type=float, default=0.0,
                        help="answer this share of predict calls 500 on purpose (testing the canary gate only)")
    args, _ = parser.parse_known_args(argv)

    if args.host:
        _bind_loopback(args.host)

    from kserve import ModelServer, model_server

    configure_json_logging("predictor", args.log_level)
    model_server.args.configure_logging = False  # KServe would replace our JSON lines with its own format
    model_server.app.add_exception_handler(Overloaded, _overloaded)
    from .predictor_metrics import PredictMetricsMiddleware, PredictorMetrics

    model_server.app.add_middleware(PredictMetricsMiddleware, metrics=PredictorMetrics(),
                                    fault_error_share=args.fault_error_share)

    model = SentimentPredictor(args.model_name, Path(args.model_dir), args.version, args.batch_size,
                               runtime=args.runtime, threads=args.threads, max_wait_ms=args.max_wait_ms,
                               max_queue=args.max_queue, latency_budget_ms=args.latency_budget_ms)
    model.load()
    if args.http_nice:
        yield_to_model(model, args.http_nice)
    # One worker process, and KServe's per-request latency logging off: the model keeps the cores.
    ModelServer(http_port=args.http_port, enable_grpc=False, workers=1, enable_latency_logging=False).start([model])


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


if __name__ == "__main__":
    main()

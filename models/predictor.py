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

A cold start overlaps its two halves: the onnx-int8 model loads (and runs one warm-up pass) in a thread
while this thread imports KServe (models/predictor_server.py), which needs no model; on 2 cores the
halves take one core each. The server says ready only once both are done. KServe comes in without
its Kubernetes client and httpx's CLI (models/kserve_import.py), which a model server never runs.
"""


from __future__ import annotations

import argparse
import os
import threading
from pathlib import Path
from typing import Any

from mlops_cli.common.logging_setup import configure_json_logging

from .kserve_import import import_kserve
from .onnx_classifier import is_runtime_dir
from .served_classifier import RUNTIMES, load_classifier, warm_up

__all__ = ["RUNTIMES", "load_classifier", "main"]


class Preload:
    """The onnx-int8 model loading in a thread from now on; `result()` waits for it. The torch runtime
    loads in `result()` itself: torch's import is Python, which a second thread would only slow down."""

    def __init__(self, model_dir: Path, runtime: str, threads: int) -> None:
        self.model_dir, self.runtime, self.threads = model_dir, runtime, threads
        self._classifier: Any = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if runtime == "onnx-int8" or (runtime == "auto" and is_runtime_dir(model_dir)):
            self._thread = threading.Thread(target=self._load, name="model-preload", daemon=True)
            self._thread.start()

    def _load(self) -> None:
        try:
            self._classifier = warm_up(load_classifier(self.model_dir, self.runtime, self.threads))
        except BaseException as exc:   # re-raised in the main thread by result()
            self._error = exc

    def result(self) -> Any:
        if self._thread is None:
            return warm_up(load_classifier(self.model_dir, self.runtime, self.threads))
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._classifier


def __getattr__(name: str) -> Any:
    # The KServe side lives in predictor_server (imported late, see the module doc); old imports still work.
    if name in ("SentimentPredictor", "yield_to_model"):
        from . import predictor_server

        return getattr(predictor_server, name)
    raise AttributeError(name)


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
    preloading = Preload(Path(args.model_dir), args.runtime, args.threads)

    import_kserve()   # without the Kubernetes client, which a model server never calls (kserve_import.py)
    from kserve import ModelServer, model_server

    from .predictor_server import SentimentPredictor, _bind_loopback, _overloaded, yield_to_model

    if args.host:
        _bind_loopback(args.host)

    configure_json_logging("predictor", args.log_level)
    model_server.args.configure_logging = False  # KServe would replace our JSON lines with its own format
    from .batcher import Overloaded

    model_server.app.add_exception_handler(Overloaded, _overloaded)
    from .predictor_metrics import PredictMetricsMiddleware, PredictorMetrics

    model_server.app.add_middleware(PredictMetricsMiddleware, metrics=PredictorMetrics(),
                                    fault_error_share=args.fault_error_share)

    model = SentimentPredictor(args.model_name, Path(args.model_dir), args.version, args.batch_size,
                               runtime=args.runtime, threads=args.threads, max_wait_ms=args.max_wait_ms,
                               max_queue=args.max_queue, latency_budget_ms=args.latency_budget_ms)
    model.load(preloading.result())
    if args.http_nice:
        yield_to_model(model, args.http_nice)
    # One worker process, and KServe's per-request latency logging off: the model keeps the cores.
    ModelServer(http_port=args.http_port, enable_grpc=False, workers=1, enable_latency_logging=False).start([model])



if __name__ == "__main__":
    main()

"""The served classifier on onnxruntime: the same texts in, the same probabilities out, without torch.

A runtime directory (written by ``models.onnx_export``) is self-contained: ``model.onnx`` (the int8
network: input_ids, attention_mask -> logits), ``tokenizer.json``, ``vocab.txt`` and
``mlops_classifier.json`` (labels, max_length). Only numpy, ``tokenizers`` and onnxruntime are
imported, so a predictor serving it starts fast and its image needs no torch.

Example::

    clf = OnnxClassifier.load("path/to/onnx-int8", threads=2)
    clf.predict_proba(["Worked wonders.", "Made me dizzy."])   # -> array of shape (2, len(clf.labels))
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from mlops_cli.common.text_policy import clean_text

from .pass_plan import plan_passes

MODEL_FILE = "model.onnx"
META_FILE = "mlops_classifier.json"
TOKENIZER_FILE = "tokenizer.json"


def is_runtime_dir(path: str | Path) -> bool:
    return (Path(path) / MODEL_FILE).is_file() and (Path(path) / META_FILE).is_file()


class OnnxClassifier:
    def __init__(self, session, tokenizer, labels: Sequence[str], max_length: int, pad_id: int = 0) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.max_length = int(max_length)
        self.pad_id = int(pad_id)

    @classmethod
    def load(cls, model_dir: str | Path, threads: int = 0) -> "OnnxClassifier":
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_dir = Path(model_dir)
        if not is_runtime_dir(model_dir):
            raise FileNotFoundError(f"{model_dir} holds no {MODEL_FILE} + {META_FILE}: not an exported runtime")
        meta = json.loads((model_dir / META_FILE).read_text())
        tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
        # Same as the fp32 tokenizer call: truncation to max_length (special tokens included); padding is
        # done per pass (see `predict_proba`), after the texts are grouped by length.
        tokenizer.enable_truncation(int(meta["max_length"]))
        tokenizer.no_padding()
        options = ort.SessionOptions()
        # One forward pass at a time (the batcher serialises them): all cores to the operators inside it,
        # none to running graph branches in parallel, which only adds contention on a small machine.
        options.intra_op_num_threads = threads or (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle operator threads sleep instead of spinning: the HTTP server in the same process and the
        # gateway beside it need those cycles between passes (measured: 50 -> 41 ms of predictor CPU per
        # request at concurrency 32 on 2 cores).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(model_dir / MODEL_FILE), options, providers=["CPUExecutionProvider"])
        return cls(session, tokenizer, meta["labels"], meta["max_length"], int(meta.get("pad_token_id", 0)))

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Clean and tokenise, truncated to max_length, unpadded."""
        return [e.ids for e in self.tokenizer.encode_batch([clean_text(t) for t in texts])]

    def pass_logits(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        """One forward pass over token id lists, right-padded to the longest of them."""
        width = max(len(row) for row in ids)
        input_ids = np.full((len(ids), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for r, row in enumerate(ids):
            input_ids[r, :len(row)] = row
            mask[r, :len(row)] = 1
        return self.session.run(["logits"], {"input_ids": input_ids, "attention_mask": mask})[0]

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        return self.pass_logits(self.token_ids(texts))

    def predict_proba(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Class probabilities per text, rows in input order; `batch_size` caps the texts in one pass."""
        texts = list(texts)
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        if not texts:
            return out
        ids = self.token_ids(texts)
        for idx in plan_passes([len(row) for row in ids], batch_size):
            logits = self.pass_logits([ids[i] for i in idx]).astype(np.float64)
            logits -= logits.max(axis=1, keepdims=True)
            exp = np.exp(logits)
            out[idx] = exp / exp.sum(axis=1, keepdims=True)
        return out

    def predict(self, texts: list[str], batch_size: int = 32) -> list[tuple[str, float]]:
        proba = self.predict_proba(texts, batch_size)
        return [(self.labels[int(row.argmax())], float(row.max())) for row in proba]

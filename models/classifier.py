"""The review classifier: tokenizer + BERT-family encoder + pooled linear head.

Training, evaluation and serving all go through this one class, so they turn the same text into the
same probabilities. A saved directory is self-contained: the encoder's HF config and weights, the
tokenizer files (vocab.txt included), ``head.safetensors`` and ``mlops_classifier.json``.

Example::

    clf = SentimentClassifier.load("path/to/classifier")
    clf.predict_proba(["Worked wonders.", "Made me dizzy."])   # -> array of shape (2, len(clf.labels))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from mlops_cli.common.text_policy import clean_text

from .pass_plan import plan_passes

META_FILE = "mlops_classifier.json"
HEAD_FILE = "head.safetensors"
FORMAT_VERSION = 1


def _quiet_transformers() -> None:
    # Loading and saving draw tqdm bars on stderr; the CLI has its own progress display.
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


class SentimentNetwork(nn.Module):
    """Encoder -> pooled sentence vector -> dropout -> linear layer over the labels."""

    def __init__(self, encoder: nn.Module, n_labels: int, pooling: str, dropout: float = 0.1) -> None:
        super().__init__()
        if pooling not in {"mean", "cls"}:
            raise ValueError(f"pooling must be mean or cls, got {pooling!r}")
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, n_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            # Mean over real tokens only: padding must not dilute short reviews.
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(self.dropout(pooled))


class SentimentClassifier:
    """Texts in, label probabilities out. `labels` are capitalised, in column order of `predict_proba`."""

    def __init__(self, tokenizer, network: SentimentNetwork, labels: Sequence[str], max_length: int,
                 model_dir: Path | None = None, base_model: str = "") -> None:
        self.tokenizer = tokenizer
        self.network = network
        self.labels = list(labels)
        self.max_length = int(max_length)
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.base_model = base_model

    @property
    def pooling(self) -> str:
        return self.network.pooling

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def from_base(cls, base_model: str | Path, labels: Sequence[str], *, max_length: int,
                  pooling: str = "mean") -> "SentimentClassifier":
        """A fresh classifier over a pretrained encoder; the head is initialised from torch's RNG."""
        from transformers import AutoModel, AutoTokenizer

        _quiet_transformers()
        # local_files_only: nothing is ever downloaded at run time; a name must already be in the HF cache.
        tokenizer = AutoTokenizer.from_pretrained(str(base_model), local_files_only=True)
        encoder = AutoModel.from_pretrained(str(base_model), local_files_only=True)
        network = SentimentNetwork(encoder, len(labels), pooling)
        return cls(tokenizer, network, labels, max_length, base_model=str(base_model))

    @classmethod
    def load(cls, model_dir: str | Path) -> "SentimentClassifier":
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        _quiet_transformers()
        model_dir = Path(model_dir)
        meta_file = model_dir / META_FILE
        if not meta_file.is_file():
            raise FileNotFoundError(f"{meta_file} not found: {model_dir} is not a saved SentimentClassifier")
        meta = json.loads(meta_file.read_text())
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        encoder = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
        network = SentimentNetwork(encoder, len(meta["labels"]), meta["pooling"])
        network.head.load_state_dict(load_file(str(model_dir / HEAD_FILE)))
        network.eval()
        return cls(tokenizer, network, meta["labels"], meta["max_length"], model_dir, meta.get("base_model", ""))

    def save(self, model_dir: str | Path) -> Path:
        from safetensors.torch import save_file

        _quiet_transformers()
        model_dir = Path(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        self.network.encoder.save_pretrained(str(model_dir))
        self.tokenizer.save_pretrained(str(model_dir))
        vocab_file = model_dir / "vocab.txt"
        if not vocab_file.is_file():
            # transformers 5 saves only tokenizer.json; vocab.txt (one WordPiece token per line, in id
            # order) is part of our directory contract: the drift features read it (models.text_features).
            tokens = sorted(self.tokenizer.get_vocab().items(), key=lambda kv: kv[1])
            vocab_file.write_text("".join(f"{token}\n" for token, _ in tokens), encoding="utf-8")
        head = {k: v.detach().contiguous().cpu() for k, v in self.network.head.state_dict().items()}
        save_file(head, str(model_dir / HEAD_FILE))
        meta = {"format_version": FORMAT_VERSION, "labels": self.labels, "pooling": self.pooling,
                "max_length": self.max_length, "base_model": self.base_model}
        (model_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        self.model_dir = model_dir
        return model_dir

    # -- inference -----------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> dict[str, list[list[int]]]:
        """Clean and tokenise, truncated to max_length, unpadded (training pads per batch itself)."""
        return dict(self.tokenizer([clean_text(t) for t in texts], truncation=True, max_length=self.max_length))

    def encode(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Clean, tokenise and pad to the longest text of the batch (at most max_length tokens)."""
        return self.tokenizer([clean_text(t) for t in texts], truncation=True, max_length=self.max_length,
                              padding=True, return_tensors="pt")

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.network(**batch)

    def predict_proba(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Class probabilities per text, rows in input order; `batch_size` caps the texts in one pass."""
        texts = list(texts)
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        if not texts:
            return out
        ids = self.tokenize(texts)["input_ids"]
        was_training = self.network.training
        self.network.eval()
        try:
            with torch.inference_mode():
                for idx in plan_passes([len(row) for row in ids], batch_size):
                    batch = self.tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt")
                    probs = torch.softmax(self.logits(dict(batch)).float(), dim=-1)
                    out[idx] = probs.numpy()
        finally:
            self.network.train(was_training)
        return out

    def predict(self, texts: list[str], batch_size: int = 32) -> list[tuple[str, float]]:
        """(label, confidence) per text."""
        proba = self.predict_proba(texts, batch_size)
        return [(self.labels[int(row.argmax())], float(row.max())) for row in proba]

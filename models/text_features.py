"""Per-text features the drift monitor compares: computed the same way for reference and live data."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def load_vocab(model_dir: str | Path) -> frozenset[str]:
    """Whole-word entries of a WordPiece vocabulary (continuation pieces like '##ing' are not words).

    Read from vocab.txt, or from tokenizer.json: transformers 5 saves only the latter.
    """
    model_dir = Path(model_dir)
    vocab_file, tokenizer_file = model_dir / "vocab.txt", model_dir / "tokenizer.json"
    if vocab_file.is_file():
        entries: Iterable[str] = vocab_file.read_text(encoding="utf-8").splitlines()
    elif tokenizer_file.is_file():
        entries = (json.loads(tokenizer_file.read_text(encoding="utf-8")).get("model") or {}).get("vocab") or {}
    else:
        return frozenset()
    return frozenset(e for e in entries if e and not e.startswith("##") and not e.startswith("["))


def text_features(text: str, vocab: Iterable[str] | frozenset[str]) -> dict[str, float]:
    """text_length (characters), word_count, oov_share (share of words not whole tokens in the vocab)."""
    found = words(text)
    vocab_set = vocab if isinstance(vocab, frozenset) else frozenset(vocab)
    oov = sum(1 for w in found if w not in vocab_set) if vocab_set else 0
    return {
        "text_length": float(len(text)),
        "word_count": float(len(found)),
        "oov_share": (oov / len(found)) if found and vocab_set else 0.0,
    }

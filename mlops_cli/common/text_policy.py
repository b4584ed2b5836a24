"""What is done to review text before a model sees it, and to logits after.

`clean_text` is the normalisation every stage applies (the dataset, the models in training and in
serving); the gateway adds truncation and the decision. Kept pure and shared so that training,
evaluation, the gateway and tests agree on one definition.
"""

from __future__ import annotations

import html
import math
import re
import unicodedata
from typing import Sequence

from .errors import DataError


def clean_text(text: str) -> str:
    """The normalisation every stage applies: unescape HTML, NFC, collapse whitespace, drop wrapping quotes."""
    text = unicodedata.normalize("NFC", html.unescape(text))
    text = re.sub(r"\s+", " ", text).strip()
    while len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].strip()
    return text


def user_text(raw: str | bytes, where: str) -> str:
    """Text a user handed the CLI (an argument, stdin) as Unicode, or a DataError naming the first bad byte.

    Python decodes undecodable argv bytes (and stdin's, under the C/POSIX locale) to lone surrogates
    ("surrogateescape", PEP 383) instead of failing; those only fail later, when the request body is
    encoded as UTF-8. Stdin handed over as bytes is decoded here, strictly.
    """
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where} is not valid UTF-8: byte 0x{data[exc.start]:02x} at position {exc.start}",
                        hint="re-encode it as UTF-8, e.g. `iconv -f latin1 -t utf-8`") from None


def prepare_text(text: str, policy: str, max_words: int) -> str:
    """Normalise (HTML entities, unicode NFC, whitespace) and truncate by words per the policy.

    `head` keeps the first words; `head_tail` keeps the opening and the ending, where reviews
    tend to state their verdict.
    """
    cleaned = clean_text(text)
    words = cleaned.split(" ")
    if len(words) <= max_words:
        return cleaned
    if policy == "head_tail":
        head = max_words // 2
        return " ".join(words[:head] + words[len(words) - (max_words - head):])
    return " ".join(words[:max_words])


def softmax(logits: Sequence[float]) -> list[float]:
    top = max(logits)
    exps = [math.exp(x - top) for x in logits]
    total = sum(exps)
    return [e / total for e in exps]


def decide(logits: Sequence[float], labels: Sequence[str]) -> tuple[str, float]:
    """The label with the highest probability, and that probability as the confidence."""
    probs = softmax(logits)
    best = max(range(len(probs)), key=probs.__getitem__)
    return labels[best].capitalize(), probs[best]

"""The model's classes by `[data].classes`, and how a rating column may spell them. A module of its own so
the gateway, which checks feedback labels, does not reach the dataset code (pandas is not in its image)."""

from __future__ import annotations

BINARY_LABELS = ("Negative", "Positive")
THREE_LABELS = ("Negative", "Neutral", "Positive")


def labels_for(classes: str) -> tuple[str, ...]:
    return BINARY_LABELS if classes == "binary" else THREE_LABELS


# how a rating column may spell each class
_LABEL_ALIASES = {
    "positive": "Positive", "pos": "Positive", "1": "Positive", "good": "Positive",
    "negative": "Negative", "neg": "Negative", "0": "Negative", "bad": "Negative",
    "neutral": "Neutral", "neu": "Neutral",
}


def rating_label(raw: str) -> str | None:
    return _LABEL_ALIASES.get(raw.strip().lower())

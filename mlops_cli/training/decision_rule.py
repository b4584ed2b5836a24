"""Choices made on the validation split after fitting: the decision rule and the temperature.

- Decision rule ([train].decision): the training data is ~70% positive, and a model fitted on it leans
  that way on any text it is unsure of. ``balanced`` adds the per-class logit offsets that maximise
  balanced accuracy (mean recall) on validation; ``prior`` subtracts the log of the fit rows' class
  shares (the Bayes rule for equal priors); ``argmax`` changes nothing.
- Temperature ([train].calibrate): one scalar dividing the logits, chosen to minimise the validation
  log-loss (Guo et al., 2017, "On Calibration of Modern Neural Networks"). It never changes a decision.

Both are folded into the linear head, so the saved model's logits already carry them: the predictor, the
gateway's softmax and every consumer see the corrected model without knowing about it.

Example::

    offsets = choose_offsets(val_logits, y_val, "balanced", fit_prior)
    temperature = fit_temperature(val_logits + offsets, y_val)
    fold_into_head(network.head, offsets, temperature)
"""

from __future__ import annotations

import numpy as np

TEMPERATURES = np.exp(np.linspace(np.log(0.05), np.log(20.0), 401))
OFFSET_GRID = np.linspace(-4.0, 4.0, 81)


def balanced_accuracy(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    recalls = [float((pred[y == c] == c).mean()) for c in range(n_classes) if (y == c).any()]
    return float(np.mean(recalls)) if recalls else float("nan")


def choose_offsets(logits: np.ndarray, y: np.ndarray, rule: str, fit_prior: np.ndarray) -> np.ndarray:
    k = logits.shape[1]
    if rule == "argmax":
        return np.zeros(k)
    if rule == "prior":
        offsets = -np.log(np.clip(fit_prior, 1e-6, None))
        return offsets - offsets[0]
    if k == 2:
        return np.array([0.0, _best_binary_offset(logits[:, 1] - logits[:, 0], y)])
    return _coordinate_search(logits, y)


def _best_binary_offset(margin: np.ndarray, y: np.ndarray) -> float:
    """Offset b on the positive margin maximising balanced accuracy; of equal ones, the smallest |b|.

    Candidates sit midway between neighbouring validation margins, so every distinct decision is tried.
    """
    cuts = np.unique(margin)
    candidates = np.concatenate([[0.0], -(cuts[:-1] + cuts[1:]) / 2, [-cuts[0] + 1.0, -cuts[-1] - 1.0]])
    positive = (margin[None, :] + candidates[:, None]) > 0
    pos, neg = y == 1, y == 0
    recall_pos = positive[:, pos].mean(axis=1) if pos.any() else np.zeros(len(candidates))
    recall_neg = (~positive[:, neg]).mean(axis=1) if neg.any() else np.zeros(len(candidates))
    score = (recall_pos + recall_neg) / 2
    best = np.flatnonzero(score >= score.max() - 1e-12)
    return float(candidates[best[np.argmin(np.abs(candidates[best]))]])


def _coordinate_search(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    k = logits.shape[1]
    offsets = np.zeros(k)
    best = balanced_accuracy(y, logits.argmax(1), k)
    for _ in range(3):
        for c in range(1, k):  # class 0 is the reference: only differences matter
            for value in OFFSET_GRID:
                trial = offsets.copy()
                trial[c] = value
                score = balanced_accuracy(y, (logits + trial).argmax(1), k)
                if score > best + 1e-12:
                    best, offsets = score, trial
    return offsets


def nll(logits: np.ndarray, y: np.ndarray) -> float:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_proba = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_proba[np.arange(len(y)), y].mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    losses = [nll(logits / t, y) for t in TEMPERATURES]
    return float(TEMPERATURES[int(np.argmin(losses))])


def fold_into_head(head, offsets: np.ndarray, temperature: float) -> None:
    """head(x) becomes (head(x) + offsets) / temperature, in place."""
    import torch

    with torch.no_grad():
        head.bias.add_(torch.as_tensor(offsets, dtype=head.bias.dtype))
        head.bias.div_(temperature)
        head.weight.div_(temperature)

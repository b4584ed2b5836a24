"""The fine-tuning loop: mean-pooled encoder + linear head under AdamW (a higher learning rate for the
head), linear warm-up then decay, loss weighted by class and source, gradient clipping, batches of similar
length; the checkpoint, decision rule and temperature are chosen on the validation split.

run.py decides what is trained on and what happens to the result; this module only fits.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..common.errors import PreflightError
from ..common.progress import Reporter
from ..config.settings import Config
from ..data.dataset import Example
from .evaluation import score

GRAD_CLIP = 1.0
LENGTH_GROUP = 8  # batches per group of similar-length examples (more = less padding, less randomness)


@dataclass
class Position:
    """Where training is, for the message when it is interrupted."""

    epoch: int = 0
    epochs: int = 0
    step: int = 0
    total: int = 0
    stage: str = "starting"


@dataclass
class _Batches:
    ids: list[list[int]]
    types: list[list[int]] | None
    labels: list[int]


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fit(config: Config, base_model: str, labels: list[str], train_set: list[Example], val_set: list[Example],
         reporter: Reporter, run, position: Position):
    """Fine-tune on train_set; keep the checkpoint that scores best on val_set; fold the decision rule and
    temperature chosen on val_set into the head. Returns (classifier, stats, choices)."""
    import torch

    from models.classifier import SentimentClassifier

    cfg = config.train
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    _seed_everything(cfg.seed)
    position.stage = "loading base model"
    try:
        classifier = SentimentClassifier.from_base(base_model, labels, max_length=cfg.max_length, pooling=cfg.pooling)
    except OSError as exc:
        raise PreflightError(f"cannot load base model {base_model!r}: {exc}",
                             hint="give a local HF model directory with --base-model (downloads are off)") from None

    index = {label: i for i, label in enumerate(labels)}
    encoded = classifier.tokenize([e.text for e in train_set])
    batches = _Batches(ids=encoded["input_ids"], types=encoded.get("token_type_ids"),
                       labels=[index[e.label] for e in train_set])
    steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    position.total = total
    warmup = int(round(cfg.warmup_ratio * total))

    network = classifier.network
    optimizer = torch.optim.AdamW(_param_groups(network, cfg), lr=cfg.learning_rate)
    # Linear warm-up to each group's rate, then linear decay to zero at the last step.
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
    class_w = _class_weights(batches.labels, len(labels), cfg.class_weight_power if cfg.class_weighting else 0.0)
    example_w = _example_weights(batches.labels, [e.source for e in train_set], class_w, cfg.source_balance)
    generator = torch.Generator().manual_seed(cfg.seed)
    pad_id = classifier.tokenizer.pad_token_id or 0
    y_val = np.array([index[e.label] for e in val_set], dtype=int)

    reporter.start("train", f"training {Path(base_model).name}", total=total)
    network.train()
    step, seen, last_loss = 0, 0, float("nan")
    best: dict[str, Any] = {"score": -math.inf, "step": 0, "epoch": 0, "state": None}
    history: list[dict[str, float]] = []
    stale = 0
    started = time.perf_counter()
    epoch = 0
    while step < total:
        epoch += 1
        position.epoch, position.stage = epoch, "training"
        epoch_loss, epoch_batches = 0.0, 0
        for batch_idx in _epoch_order(batches.ids, cfg.batch_size, generator):
            if step >= total:
                break
            inputs, targets = _collate(batches, batch_idx, pad_id)
            weights = example_w[batch_idx]
            losses = torch.nn.functional.cross_entropy(network(**inputs), targets, reduction="none")
            loss = (losses * weights).sum() / weights.sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), GRAD_CLIP)
            optimizer.step()
            scheduler.step()
            step += 1
            position.step = step
            seen += len(batch_idx)
            last_loss = float(loss.detach())
            epoch_loss += last_loss
            epoch_batches += 1
            rate = seen / max(1e-9, time.perf_counter() - started)
            reporter.advance("train", 1, epoch=f"{epoch}/{cfg.epochs}", loss=last_loss, ex_per_s=rate)
            if run:
                run.log_metrics({"train_loss": last_loss, "learning_rate": scheduler.get_last_lr()[0],
                                 "examples_per_s": rate}, step=step)
        # End of an epoch (or of max_steps): score the validation split, keep the best checkpoint.
        position.stage = "validating"
        val_logits = _logits(classifier, val_set, config.serving.batch_size)
        val_score = score(labels, y_val, _softmax(val_logits)).metrics
        history.append({"epoch": epoch, "step": step, "macro_f1": val_score["macro_f1"],
                        "balanced_accuracy": val_score["balanced_accuracy"]})
        if run:
            metrics = {"val_macro_f1": val_score["macro_f1"], "val_balanced_accuracy": val_score["balanced_accuracy"],
                       "epoch": epoch}
            if epoch_batches:
                metrics["epoch_loss"] = epoch_loss / epoch_batches
            run.log_metrics(metrics, step=step)
            run.flush()
        if val_score["macro_f1"] > best["score"]:
            best = {"score": val_score["macro_f1"], "step": step, "epoch": epoch, "logits": val_logits,
                    "state": {k: v.detach().clone() for k, v in network.state_dict().items()}}
            stale = 0
        else:
            stale += 1
            if cfg.early_stopping_patience and stale >= cfg.early_stopping_patience:
                break
        network.train()
    elapsed = time.perf_counter() - started
    reporter.finish("train", f"{step} steps, loss {last_loss:.4f}, {seen / max(1e-9, elapsed):.1f} ex/s; "
                             f"best validation macro F1 {best['score']:.3f} at step {best['step']}")
    network.load_state_dict(best["state"])
    network.eval()
    choices = _choose_on_validation(cfg, network, best["logits"], y_val, batches.labels, len(labels))
    choices.update(best_step=best["step"], best_epoch=best["epoch"], history=history)
    stats = {"steps": step, "epochs_run": round(seen / len(train_set), 3), "train_seconds": elapsed,
             "examples_per_s": seen / max(1e-9, elapsed), "final_loss": last_loss}
    return classifier, stats, choices


def _choose_on_validation(cfg, network, val_logits: np.ndarray, y_val: np.ndarray, fit_labels: list[int],
                          n_labels: int) -> dict[str, Any]:
    """Decision offsets, then temperature, both from validation logits; folded into the head."""
    from . import decision_rule

    prior = np.bincount(fit_labels, minlength=n_labels) / max(1, len(fit_labels))
    offsets = decision_rule.choose_offsets(val_logits, y_val, cfg.decision, prior)
    shifted = val_logits + offsets
    temperature = decision_rule.fit_temperature(shifted, y_val) if cfg.calibrate else 1.0
    decision_rule.fold_into_head(network.head, offsets, temperature)
    labels = list(range(n_labels))
    before = score([str(i) for i in labels], y_val, _softmax(val_logits)).metrics
    after = score([str(i) for i in labels], y_val, _softmax(shifted / temperature)).metrics
    return {"decision": cfg.decision, "offsets": [float(o) for o in offsets], "temperature": temperature,
            "metrics": {"macro_f1_before": before["macro_f1"], "macro_f1": after["macro_f1"],
                        "balanced_accuracy_before": before["balanced_accuracy"],
                        "balanced_accuracy": after["balanced_accuracy"], "ece_before": before["ece"],
                        "ece": after["ece"], "nll_before": decision_rule.nll(val_logits, y_val),
                        "nll": decision_rule.nll(shifted / temperature, y_val)}}


def _logits(classifier, rows: list[Example], batch_size: int) -> np.ndarray:
    """Raw logits in row order (predict_proba's batching, without the softmax)."""
    import torch

    texts = [e.text for e in rows]
    out = np.zeros((len(texts), len(classifier.labels)))
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    classifier.network.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            out[idx] = classifier.logits(classifier.encode([texts[i] for i in idx])).float().numpy()
    return out


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _param_groups(network, cfg) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases/LayerNorm; optional layer-wise rate decay.

    With `layer_lr_decay` < 1 the top encoder layer learns at `learning_rate` and each layer below at
    that times the decay (embeddings lowest): on a few hundred reviews the lower, general-purpose layers
    then move less, which is the usual remedy for forgetting in small-data fine-tuning.
    """
    n_layers = _encoder_depth(network.encoder)
    groups: dict[tuple[float, float], list] = {}
    for name, p in network.encoder.named_parameters():
        depth = _layer_of(name, n_layers)
        lr = cfg.learning_rate * cfg.layer_lr_decay ** max(0, n_layers - depth)
        wd = 0.0 if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else cfg.weight_decay
        groups.setdefault((lr, wd), []).append(p)
    return [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()] + [
        {"params": list(network.head.parameters()), "lr": cfg.head_learning_rate, "weight_decay": cfg.weight_decay},
    ]


def _encoder_depth(encoder) -> int:
    config = getattr(encoder, "config", None)
    return int(getattr(config, "num_hidden_layers", 0) or 0)


def _layer_of(name: str, n_layers: int) -> int:
    """0 for embeddings, i + 1 for transformer layer i, n_layers for anything above (pooler)."""
    match = re.search(r"(?:^|\.)layers?\.(\d+)\.", name)
    if match:
        return int(match.group(1)) + 1
    return 0 if "embeddings" in name else n_layers


def _class_weights(targets: list[int], n_labels: int, power: float) -> list[float]:
    """Inverse class frequency ("balanced") raised to `power`: 1 = fully balanced, 0.5 = milder, 0 = none.

    Fully balanced weights buy minority recall (macro F1) with majority precision (accuracy); a power
    below 1 trades between the two.
    """
    counts = Counter(targets)
    n = len(targets)
    return [(n / (n_labels * counts[i])) ** power if counts[i] else 0.0 for i in range(n_labels)]


def _example_weights(targets: list[int], sources: list[str], class_w: list[float], source_balance: float):
    """Per-example loss weight: its class's weight times its source's, (n / (k * n_source)) ** source_balance.

    With several corpora of very different sizes, 1 gives each source the same total weight, 0 weighs
    every row alike; the weights are normalised per batch, so only their ratios matter.
    """
    import torch

    per_source = Counter(sources)
    n, k = len(sources), len(per_source)
    source_w = {s: (n / (k * c)) ** source_balance for s, c in per_source.items()}
    return torch.tensor([class_w[t] * source_w[s] for t, s in zip(targets, sources)], dtype=torch.float32)


def _epoch_order(ids: list[list[int]], batch_size: int, generator) -> list[list[int]]:
    """Shuffle, sort within groups of LENGTH_GROUP batches by length, cut into batches, shuffle the batches."""
    import torch

    perm = torch.randperm(len(ids), generator=generator).tolist()
    group = batch_size * LENGTH_GROUP
    batches = []
    for start in range(0, len(perm), group):
        chunk = sorted(perm[start:start + group], key=lambda i: len(ids[i]))
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    shuffled = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffled]


def _collate(batches: _Batches, idx: list[int], pad_id: int):
    import torch

    width = max(len(batches.ids[i]) for i in idx)
    input_ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    types = torch.zeros((len(idx), width), dtype=torch.long)
    for row, i in enumerate(idx):
        n = len(batches.ids[i])
        input_ids[row, :n] = torch.tensor(batches.ids[i])
        mask[row, :n] = 1
        if batches.types is not None:
            types[row, :n] = torch.tensor(batches.types[i])
    inputs = {"input_ids": input_ids, "attention_mask": mask}
    if batches.types is not None:
        inputs["token_type_ids"] = types
    return inputs, torch.tensor([batches.labels[i] for i in idx], dtype=torch.long)

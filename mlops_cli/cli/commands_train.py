"""`mlops train|eval|register` and `mlops models list|promote|rollback`."""

from __future__ import annotations

from typing import Any, Optional

import typer

from .state import state

models_app = typer.Typer(help="The model registry: list versions, move aliases, roll back.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    for fn in (train, eval_, register_):
        app.command(fn.__name__.rstrip("_"))(fn)
    app.add_typer(models_app, name="models")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.4f}"
    return str(value)


def _with_ci(m: dict[str, Any], key: str) -> str:
    low, high = m.get(f"{key}_ci_low"), m.get(f"{key}_ci_high")
    return _fmt(m.get(key)) + (f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else "")


def _delta(comparison: dict[str, Any], key: str) -> str:
    if f"delta_{key}" not in comparison:
        return "-"
    return (f"{comparison[f'delta_{key}']:+.4f} [{comparison[f'delta_{key}_ci_low']:+.3f}, "
            f"{comparison[f'delta_{key}_ci_high']:+.3f}]")


def _show_evaluation(title: str, evaluation, extra: list[tuple[str, Any]] = (), comparison: dict[str, Any] | None = None) -> None:
    from . import render

    m = evaluation.metrics
    base = {k.removeprefix("baseline_"): v for k, v in (comparison or {}).items() if k.startswith("baseline_")}
    metric_rows = [("accuracy", "accuracy"), ("balanced accuracy", "balanced_accuracy"), ("macro F1", "macro_f1"),
                   ("ROC-AUC", "roc_auc"), ("ECE", "ece")]
    if comparison:
        rows = [(name, _with_ci(m, key), _with_ci(base, key), _delta(comparison, key)) for name, key in metric_rows]
        rows += [(name, str(value), "", "") for name, value in (("test reviews", evaluation.n), *extra)]
        render.show(render.table(title, ["metric", "model [95% CI]", "TF-IDF + LR baseline", "model - baseline (paired)"],
                                 rows))
    else:
        rows = [(name, _with_ci(m, key)) for name, key in metric_rows]
        rows += [("test reviews", evaluation.n), *extra]
        render.show(render.table(title, ["metric", "value"], rows))
    render.show(render.table("per class", ["label", "precision", "recall", "F1", "support"],
                             [(c["label"], _fmt(c["precision"]), _fmt(c["recall"]), _fmt(c["f1"]), int(c["support"]))
                              for c in evaluation.per_class()]))
    for name, path in evaluation.plots.items():
        render.note(f"{name.replace('_', ' ')}: {path}")


def train(
    ctx: typer.Context,
    log: bool = typer.Option(True, "--log/--no-log", help="Record the run and the model in MLflow."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Passes over the training split ([train].epochs)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=0, help="Stop after this many optimiser steps (0 = all epochs)."),
    base_model: Optional[str] = typer.Option(None, "--base-model", help="Local HF model directory (default: packaged all-MiniLM-L6-v2)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed; same seed + data + config -> same metrics."),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Tokens per review ([train].max_length)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Examples per optimiser step ([train].batch_size)."),
    learning_rate: Optional[float] = typer.Option(None, "--lr", help="Encoder learning rate ([train].learning_rate)."),
    warmup_ratio: Optional[float] = typer.Option(None, "--warmup", help="Share of steps with linear warm-up ([train].warmup_ratio)."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="AdamW weight decay ([train].weight_decay)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads, 0 = default ([train].threads)."),
) -> None:
    """Fine-tune the sentiment classifier on the dataset, evaluate it on the test split, log it to MLflow.

    A validation split is cut from the train split ([data].validation_size); the best checkpoint, the
    decision rule and the temperature are chosen on it. The TF-IDF + logistic-regression baseline is fitted
    on the same rows; both are scored on the test split with 95% bootstrap intervals and a paired
    difference. Every choice is in [train] of mlops.toml; flags override it. Ctrl-C stops cleanly: no
    half-written model is left and the MLflow run is marked KILLED.

    Examples:

      mlops train

      mlops train --max-steps 20 --no-log

      mlops train --epochs 2 --seed 7 --max-length 128 --lr 5e-5

      MLOPS_TRAIN__LAYER_LR_DECAY=0.8 mlops train
    """
    from ..training import run as training
    from . import render

    st = state(ctx)
    config = st.config({"train.epochs": epochs, "train.max_steps": max_steps, "train.base_model": base_model,
                        "train.seed": seed, "train.max_length": max_length, "train.batch_size": batch_size,
                        "train.learning_rate": learning_rate, "train.warmup_ratio": warmup_ratio,
                        "train.weight_decay": weight_decay, "train.threads": threads})
    with render.RichReporter(enabled=not (st.quiet or st.json)) as reporter:
        result = training.train(config, reporter, log=log)
    if st.json:
        render.print_json(result.as_dict())
        return
    v = result.validation
    extra = [("steps", f"{result.steps} (best on validation: step {v['best_step']})"),
             ("validation", f"{v['n']} reviews; decision {v['decision']} (offsets "
                            f"{', '.join(f'{o:+.2f}' for o in v['offsets'])}), temperature {v['temperature']:.2f}"),
             ("train time", f"{result.train_seconds:.1f} s"), ("throughput", f"{result.examples_per_s:.1f} reviews/s")]
    _show_evaluation(f"test split ({result.run_name})", result.evaluation, extra, result.comparison)
    render.note(f"model: {result.model_dir}")
    if result.run_id:
        render.success(f"MLflow run {result.run_id} at {result.tracking_uri}; register it with `mlops register`")


def eval_(
    ctx: typer.Context,
    version: Optional[str] = typer.Option(None, "--version", help="Registered model version."),
    alias: Optional[str] = typer.Option(None, "--alias", help="Registered model alias (default: the champion alias)."),
) -> None:
    """Evaluate a registered model on the test split, exactly as training does, beside the TF-IDF baseline.

    Examples:

      mlops eval --version 3

      mlops eval --alias champion --json
    """
    from ..registry import version_evaluation
    from . import render
    from .options import checked_alias, exclusive

    exclusive({"--version": version, "--alias": alias})
    checked_alias(alias)
    st = state(ctx)
    ref, result, comparison = version_evaluation.evaluate_registered(st.config(), version=version, alias=alias)
    if st.json:
        render.print_json({"version": ref.as_dict(), "evaluation": result.as_dict(), "comparison": comparison})
        return
    _show_evaluation(f"{ref.name} version {ref.version} on the test split", result, comparison=comparison)


def register_(
    ctx: typer.Context,
    run_id: Optional[str] = typer.Option(None, "--run-id", help="MLflow run to register (default: the newest with a model)."),
    alias: Optional[str] = typer.Option(None, "--alias", help="Also set this alias, e.g. champion (gated)."),
    force: bool = typer.Option(False, "--force", help="Set the alias even if the promotion gate refuses; register a run again."),
) -> None:
    """Register a trained run as a new version of the model, optionally making it champion.

    A run registered before is not registered twice: its existing version is reported (and given the
    alias, if asked); --force makes another version.

    The champion alias is refused when the candidate's macro F1 is below [registry].min_f1 or below the
    current champion's, or (with [registry].beat_baseline) when it does not beat its run's TF-IDF
    baseline; --force overrides.

    Examples:

      mlops register --alias champion

      mlops register --run-id 3f2a... --alias champion --force
    """
    from ..registry import versions as registry
    from . import render

    from .options import checked_alias

    checked_alias(alias)
    st = state(ctx)
    ref = registry.register(st.config(), run_id=run_id, alias=alias, force=force)
    if st.json:
        render.print_json(ref.as_dict())
        return
    aliases = f" ({', '.join(ref.aliases)})" if ref.aliases else ""
    if ref.already_registered:
        render.note(f"run {ref.run_id} is already registered as {ref.name} version {ref.version}{aliases}; "
                    "nothing new was created (--force registers it again)")
        if ref.repaired:
            render.success(f"completed version {ref.version}'s missing {ref.repaired} (an earlier register was interrupted)")
        return
    versus = ref.versus_baseline()
    render.success(f"registered {ref.name} version {ref.version}{aliases} from run {ref.run_id}, "
                   + (versus if versus else f"macro F1 {_fmt(ref.macro_f1)}"))


@models_app.command("list")
def list_(ctx: typer.Context) -> None:
    """Show the registered versions with aliases, key metrics, data fingerprint and creation time.

    Examples:

      mlops models list

      mlops models list --json
    """
    from ..registry import versions as registry
    from . import render

    st = state(ctx)
    config = st.config()
    refs = registry.list_versions(config)
    if st.json:
        render.print_json({"name": config.registry.model_name, "versions": [r.as_dict() for r in refs]})
        return
    rows = []
    for r in refs:
        m = r.as_dict()["metrics"]
        rows.append((r.version, ", ".join(r.aliases), _with_ci(m, "macro_f1"), _fmt(m["baseline_macro_f1"]),
                     _delta(m, "macro_f1") if m.get("delta_macro_f1") is not None else "-",
                     _fmt(m["accuracy"]), _fmt(m["ece"]), (r.tags.get("data_fingerprint") or "-")[:12], r.created,
                     r.run_id[:12]))
    render.show(render.table(f"registered model {config.registry.model_name}",
                             ["version", "aliases", "macro F1 [95% CI]", "baseline F1", "vs baseline", "accuracy",
                              "ECE", "data", "created", "run"], rows))
    if not refs:
        render.note("no versions yet: `mlops train` then `mlops register --alias champion`")


@models_app.command("promote")
def promote(
    ctx: typer.Context,
    version: str = typer.Argument(..., help="Version to promote."),
    alias: Optional[str] = typer.Option(None, "--alias", help="Alias to set (default: the champion alias)."),
    force: bool = typer.Option(False, "--force", help="Ignore the promotion gate."),
) -> None:
    """Point an alias at a version (the champion alias goes through the promotion gate).

    Examples:

      mlops models promote 3 --alias champion

      mlops models promote 2 --alias staging
    """
    from ..registry import versions as registry
    from . import render

    from .options import checked_alias

    checked_alias(alias)
    st = state(ctx)
    ref = registry.promote(st.config(), version, alias=alias, force=force)
    if st.json:
        render.print_json(ref.as_dict())
        return
    render.success(f"{ref.name} version {ref.version} now has alias(es) {', '.join(ref.aliases)}")


@models_app.command("rollback")
def rollback(
    ctx: typer.Context,
    alias: Optional[str] = typer.Option(None, "--alias", help="Alias to move back (default: the champion alias)."),
) -> None:
    """Move the champion alias back to the version that held it before.

    Examples:

      mlops models rollback

      mlops models rollback --json
    """
    from ..registry import versions as registry
    from . import render

    from .options import checked_alias

    checked_alias(alias)
    st = state(ctx)
    config = st.config()
    alias = alias or config.registry.champion_alias
    before, after = registry.rollback(config, alias)
    if st.json:
        render.print_json({"alias": alias, "from": before.as_dict(), "to": after.as_dict()})
        return
    render.success(f"{alias}: version {before.version} -> version {after.version} (macro F1 {_fmt(after.macro_f1)})")

"""The model registry: versions of the registered model ([registry].model_name), aliases and the promotion gate.

Gate: a version becomes ``champion`` only when its macro F1 is at least ``[registry].min_f1`` and at least
the current champion's, and, with ``[registry].beat_baseline``, above the TF-IDF baseline of its own run
(``estimate``: the paired difference is positive; ``interval``: its 95% interval lies above zero), unless
forced. The verdict says by how much, with the interval. Every champion change is appended to a history kept as a tag on the
registered model, so `rollback` can move the alias back to the one before.

Example::

    ref = register(config, alias="champion")          # newest finished run with a logged model
    resolve_version(config, alias="champion").version # -> "1"
    local_model_dir(config, ref)                      # -> <state_dir>/models/<name>/1/.../classifier
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..common.errors import MlopsError, NotFoundError
from ..config.settings import Config

HISTORY_TAG = "mlops.alias_history.{alias}"
# Run metrics copied onto each version as tags, so `models list` and the gate need no run lookups.
_CI = ("_ci_low", "_ci_high")
METRIC_TAGS = (
    "macro_f1", "accuracy", "roc_auc", "ece", "balanced_accuracy",
    *(m + b for m in ("macro_f1", "accuracy", "balanced_accuracy", "ece") for b in _CI),
    "baseline_macro_f1", "baseline_accuracy", "baseline_ece",
    *(f"baseline_{m}{b}" for m in ("macro_f1", "accuracy") for b in _CI),
    "delta_macro_f1", "delta_accuracy", *(f"delta_{m}{b}" for m in ("macro_f1", "accuracy") for b in _CI),
)


class PromotionRefused(MlopsError):
    """The promotion gate said no (numbers in the message); --force overrides."""

    exit_code = 3


@dataclass
class ModelRef:
    name: str
    version: str
    run_id: str
    source: str
    aliases: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    created: str = ""
    # Where the files are: MLflow 3's `source` is `models:/m-<id>`, a registry name, not a location.
    artifact_uri: str = ""
    already_registered: bool = False  # register found a version from this run and created none
    repaired: str = ""  # what register completed on that existing version (an interrupted register left it out)

    @property
    def location(self) -> str:
        """The model's artifact location (resolved by resolve_version), else its source."""
        return self.artifact_uri or self.source

    @property
    def macro_f1(self) -> float | None:
        return _float(self.tags.get("macro_f1"))

    def versus_baseline(self) -> str | None:
        return versus_baseline({k: _float(v) for k, v in self.tags.items() if k in METRIC_TAGS})

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "aliases": self.aliases, "run_id": self.run_id,
                "source": self.source, "created": self.created,
                "metrics": {k: _float(self.tags.get(k)) for k in METRIC_TAGS},
                "versus_baseline": self.versus_baseline(),
                "data_fingerprint": self.tags.get("data_fingerprint"), "git_commit": self.tags.get("git_commit"),
                "tags": self.tags, "already_registered": self.already_registered, "repaired": self.repaired}


def versus_baseline(metrics: dict[str, float | None]) -> str | None:
    """'macro F1 0.8012 vs baseline 0.7791: +0.0221 (95% CI -0.0040 to +0.0483)', or None without a baseline."""
    if metrics.get("delta_macro_f1") is None or metrics.get("baseline_macro_f1") is None:
        return None
    low, high = metrics.get("delta_macro_f1_ci_low"), metrics.get("delta_macro_f1_ci_high")
    ci = f" (95% CI {low:+.4f} to {high:+.4f})" if low is not None and high is not None else ""
    return (f"macro F1 {metrics.get('macro_f1') or 0:.4f} vs baseline {metrics['baseline_macro_f1']:.4f}: "
            f"{metrics['delta_macro_f1']:+.4f}{ci}")


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _client(config: Config):
    from ..adapters import mlflow_tracking

    return mlflow_tracking.client(config)


def _ref(mv) -> ModelRef:
    created = datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=timezone.utc).isoformat(timespec="seconds")
    return ModelRef(name=mv.name, version=str(mv.version), run_id=mv.run_id or "", source=mv.source,
                    aliases=sorted(getattr(mv, "aliases", []) or []), tags=dict(mv.tags or {}), created=created)


# -- reading ---------------------------------------------------------------------------------------

def list_versions(config: Config) -> list[ModelRef]:
    from mlflow.exceptions import MlflowException

    c = _client(config)
    name = config.registry.model_name
    try:
        # Search results leave `aliases` empty on some stores; the registered model has them all.
        aliases = dict(c.get_registered_model(name).aliases or {})
    except MlflowException:
        return []
    refs = [_ref(mv) for mv in c.search_model_versions(f"name = '{name}'")]
    for ref in refs:
        ref.aliases = sorted(a for a, v in aliases.items() if str(v) == ref.version)
    return sorted(refs, key=lambda r: int(r.version))


def resolve_version(config: Config, version: str | None = None, alias: str | None = None) -> ModelRef:
    """A version by number, or by alias (default: the champion alias)."""
    from mlflow.exceptions import MlflowException

    c = _client(config)
    name = config.registry.model_name
    try:
        if version is not None:
            ref = _ref(c.get_model_version(name, str(version)))
        else:
            alias = alias or config.registry.champion_alias
            ref = _ref(c.get_model_version_by_alias(name, alias))
        # The real artifact location (a logged model's artifact_location for `models:/m-<id>` sources):
        # MLflow 3.17 mlflow/store/model_registry/{sqlalchemy,rest}_store.py get_model_version_download_uri.
        ref.artifact_uri = c.get_model_version_download_uri(name, ref.version)
        return ref
    except MlflowException:
        what = f"version {version}" if version is not None else f"alias {alias!r}"
        raise NotFoundError(f"registered model {name!r} has no {what}",
                            hint="`mlops models list` shows versions and aliases; `mlops register` creates one") from None


def local_model_dir(config: Config, ref: ModelRef) -> Path:
    """The version's SentimentClassifier directory, downloaded once into <state_dir>/models/<name>/<version>/."""
    from ..adapters import mlflow_tracking

    target = config.state_dir / "models" / ref.name / ref.version
    classifier = target / "artifacts" / mlflow_tracking.CLASSIFIER_ARTIFACT
    if (classifier / "mlops_classifier.json").is_file():
        return classifier
    target.parent.mkdir(parents=True, exist_ok=True)
    # Download beside the target, then rename: a reader never sees a half-downloaded model.
    staging = Path(tempfile.mkdtemp(prefix=f".{ref.version}-", dir=target.parent))
    try:
        mlflow_tracking.client(config)  # points MLflow at the right store first
        mlflow_tracking.download_model(f"models:/{ref.name}/{ref.version}", staging)
        if not (staging / "artifacts" / mlflow_tracking.CLASSIFIER_ARTIFACT / "mlops_classifier.json").is_file():
            raise NotFoundError(f"model {ref.name} version {ref.version} ({ref.source}) holds no classifier artifact",
                                hint="register a run logged by `mlops train --log`")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return classifier


# -- writing ---------------------------------------------------------------------------------------

def register(config: Config, run_id: str | None = None, alias: str | None = None, force: bool = False) -> ModelRef:
    """New version from the given (or newest) run; the gate is checked before anything is created.

    Idempotent per run: a run already registered gives back its existing version (`already_registered`),
    with `alias` set on it as asked, and its drift reference attached if a register interrupted (Ctrl-C)
    between creating the version and attaching it left it without one; `force` registers another version."""
    import mlflow

    from ..adapters import mlflow_tracking

    run_id = run_id or mlflow_tracking.latest_model_run(config)
    existing = None if force else _version_of_run(config, run_id)
    if existing is not None:
        from .drift_reference import REFERENCE_TAG

        if REFERENCE_TAG not in existing.tags:
            _attach_drift_reference(config, existing)
            existing = resolve_version(config, version=existing.version)
            existing.repaired = "drift reference"
        if alias:
            _check_gate(config, alias, existing.macro_f1, f"version {existing.version}", force)
            _check_baseline_gate(config, alias, {k: _float(v) for k, v in existing.tags.items()},
                                 f"version {existing.version}", force)
            _set_alias(config, existing.version, alias)
            repaired, existing = existing.repaired, resolve_version(config, version=existing.version)
            existing.repaired = repaired
        existing.already_registered = True
        return existing
    run = mlflow_tracking.get_run(config, run_id)
    if run.data.tags.get(mlflow_tracking.MODEL_LOGGED_TAG) != "true":
        raise NotFoundError(f"run {run_id} has no logged model", hint="train with `mlops train --log`")
    metrics = run.data.metrics
    if alias:
        _check_gate(config, alias, metrics.get("macro_f1"), f"run {run_id}", force)
        _check_baseline_gate(config, alias, metrics, f"run {run_id}", force)

    tags = {k: f"{metrics[k]:.6f}" for k in METRIC_TAGS if k in metrics}
    for key in ("data_fingerprint", "git_commit", "base_model", "labels"):
        if run.data.tags.get(key):
            tags[key] = run.data.tags[key]
    tags["run_id"] = run_id
    _client(config)  # preflight + point MLflow at the store
    mv = mlflow.register_model(f"runs:/{run_id}/{mlflow_tracking.MODEL_ARTIFACT_PATH}",
                               config.registry.model_name, tags=tags)
    ref = _ref(_client(config).get_model_version(mv.name, mv.version))
    _attach_drift_reference(config, ref)
    if alias:
        _set_alias(config, ref.version, alias)
        ref = resolve_version(config, version=ref.version)
    return ref


def _version_of_run(config: Config, run_id: str) -> ModelRef | None:
    """The oldest version registered from `run_id`, if any."""
    name = config.registry.model_name
    found = [_ref(mv) for mv in _client(config).search_model_versions(f"name = '{name}' and run_id = '{run_id}'")]
    return min(found, key=lambda r: int(r.version)) if found else None


def _attach_drift_reference(config: Config, ref: ModelRef) -> None:
    from ..data.dataset import read_split
    from . import drift_reference

    drift_reference.attach_reference(config, ref, local_model_dir(config, ref), read_split(config, "train"))


def promote(config: Config, version: str, alias: str | None = None, force: bool = False) -> ModelRef:
    alias = alias or config.registry.champion_alias
    ref = resolve_version(config, version=version)
    if alias in ref.aliases:
        return ref
    _check_gate(config, alias, ref.macro_f1, f"version {ref.version}", force)
    _check_baseline_gate(config, alias, {k: _float(v) for k, v in ref.tags.items()}, f"version {ref.version}", force)
    _set_alias(config, ref.version, alias)
    return resolve_version(config, version=ref.version)


def rollback(config: Config, alias: str | None = None) -> tuple[ModelRef, ModelRef]:
    """Move the alias back to the version that held it before. Returns (from, to)."""
    alias = alias or config.registry.champion_alias
    current = resolve_version(config, alias=alias)
    history = [v for v in _history(config, alias) if v != current.version] + [current.version]
    existing = {r.version for r in list_versions(config)}
    previous = [v for v in history[:-1] if v in existing]
    if not previous:
        raise NotFoundError(f"alias {alias!r} has no earlier version to roll back to (it is on version {current.version})",
                            hint=f"set one explicitly with `mlops models promote VERSION --alias {alias}`")
    target = previous[-1]
    c = _client(config)
    c.set_registered_model_alias(config.registry.model_name, alias, target)
    _save_history(config, alias, previous)
    return current, resolve_version(config, version=target)


def champion_rules_refusal(config: Config, run_id: str) -> str | None:
    """Why the registry would refuse the run's model as champion on its own floors ([registry].min_f1 and
    beat_baseline), or None. The loop asks before its canary: its gate stands in for the third rule, beating
    the current champion's test macro F1 (fresh labels, with [loop].max_test_drop of margin on the test
    split), and its promotion after a healthy canary must not then be refused half-way."""
    from ..adapters import mlflow_tracking

    metrics = mlflow_tracking.get_run(config, run_id).data.metrics
    alias = config.registry.champion_alias
    try:
        _check_floor(config, alias, metrics.get("macro_f1"), f"run {run_id}")
        _check_baseline_gate(config, alias, metrics, f"run {run_id}", False)
    except PromotionRefused as exc:
        return exc.message
    return None


def _check_floor(config: Config, alias: str, candidate_f1: float | None, what: str) -> None:
    if candidate_f1 is None:
        raise PromotionRefused(f"{what} has no macro_f1 metric, so it cannot become {alias!r}",
                               hint="evaluate it with `mlops train --log`, or pass --force")
    floor = config.registry.min_f1
    if candidate_f1 < floor:
        raise PromotionRefused(f"{what}: macro F1 {candidate_f1:.4f} is below [registry].min_f1 {floor:.4f}; "
                               f"not made {alias!r}", hint="train a better model, or pass --force")


def _check_gate(config: Config, alias: str, candidate_f1: float | None, what: str, force: bool) -> None:
    if alias != config.registry.champion_alias or force:
        return
    _check_floor(config, alias, candidate_f1, what)
    try:
        champion = resolve_version(config, alias=alias)
    except NotFoundError:
        return
    champion_f1 = champion.macro_f1
    if champion_f1 is not None and candidate_f1 < champion_f1:
        raise PromotionRefused(
            f"{what}: macro F1 {candidate_f1:.4f} is below the current {alias} (version {champion.version}) "
            f"macro F1 {champion_f1:.4f}; not made {alias!r}",
            hint="train a better model, or pass --force to promote it anyway")


def _check_baseline_gate(config: Config, alias: str, metrics: dict[str, Any], what: str, force: bool) -> None:
    rule = config.registry.beat_baseline
    if rule == "off" or alias != config.registry.champion_alias or force:
        return
    verdict = versus_baseline(metrics)
    if verdict is None:
        raise PromotionRefused(f"{what} has no baseline comparison, and [registry].beat_baseline = {rule!r} needs one",
                               hint="train it again with `mlops train --log` (every run fits the baseline), "
                                    "or pass --force")
    delta, low = metrics["delta_macro_f1"], metrics.get("delta_macro_f1_ci_low")
    if rule == "estimate" and delta <= 0:
        raise PromotionRefused(f"{what} does not beat the TF-IDF baseline: {verdict}; not made {alias!r}",
                               hint="train a better model, set [registry].beat_baseline = \"off\", or pass --force")
    if rule == "interval" and (low is None or low <= 0):
        raise PromotionRefused(
            f"{what} does not beat the TF-IDF baseline beyond doubt: {verdict}; [registry].beat_baseline = "
            f"'interval' needs the whole interval above 0; not made {alias!r}",
            hint="more test data narrows the interval; or set beat_baseline = \"estimate\", or pass --force")


def _set_alias(config: Config, version: str, alias: str) -> None:
    c = _client(config)
    name = config.registry.model_name
    history = _history(config, alias)
    try:
        current = c.get_model_version_by_alias(name, alias).version
    except Exception:  # no such alias yet
        current = None
    # The alias may have been moved outside mlops (MLflow UI): record where it really was.
    if current is not None and (not history or history[-1] != str(current)):
        history.append(str(current))
    c.set_registered_model_alias(name, alias, version)
    if not history or history[-1] != version:
        history.append(version)
    _save_history(config, alias, history)


def _history(config: Config, alias: str) -> list[str]:
    c = _client(config)
    model = c.get_registered_model(config.registry.model_name)
    raw = (model.tags or {}).get(HISTORY_TAG.format(alias=alias), "[]")
    try:
        return [str(v) for v in json.loads(raw)]
    except json.JSONDecodeError:
        return []


def _save_history(config: Config, alias: str, history: list[str]) -> None:
    # Bounded: MLflow tag values have a size limit, and nobody rolls back 50 promotions.
    _client(config).set_registered_model_tag(config.registry.model_name, HISTORY_TAG.format(alias=alias),
                                             json.dumps(history[-50:]))

"""The real steps of a loop pass (loop/cycle.py runs them in order and records what each decided).

Triggers: retraining needs at least [loop].min_labels labelled feedback texts, more than the last retrain
used; then it runs on dataset drift ([loop].on_drift), on live accuracy under the floor
([loop].on_accuracy_floor: the whole bootstrap interval below it), or always when both are off.
"""

from __future__ import annotations

from typing import Any

from ..common.errors import MlopsError
from ..common.progress import Reporter
from ..config.settings import Config


def triggers(config: Config, last: dict[str, Any] | None) -> dict[str, Any]:
    from ..monitoring.drift import run_drift
    from ..monitoring.live_quality import live_quality
    from .retrain import feedback_examples, labels_of_last_retrain

    labels = len(feedback_examples(config))
    used = max(_labels_used(last), labels_of_last_retrain(config))
    evidence: dict[str, Any] = {"labels": labels, "labels_used_by_last_retrain": used,
                                "min_labels": config.loop.min_labels}
    try:
        drift = run_drift(config)
        evidence["drift"] = {"status": drift.status, "dataset_drift": drift.dataset_drift,
                             "share_drifted": drift.share_drifted, "model_version": drift.model_version,
                             "samples": drift.samples}
        drifted = bool(drift.dataset_drift)
    except MlopsError as exc:  # no reference or registry: no drift verdict, the other triggers still count
        evidence["drift"] = {"status": "error", "message": str(exc)}
        drifted = False
    quality = live_quality(config)
    below = [v.model_version for v in quality.versions.values() if v.below_floor]
    evidence["live_quality"] = quality.as_dict()
    fired = []
    if drifted and config.loop.on_drift:
        fired.append("dataset drift")
    if below and config.loop.on_accuracy_floor:
        fired.append(f"live accuracy of version(s) {', '.join(below)} under {config.feedback.accuracy_floor}")
    if not (config.loop.on_drift or config.loop.on_accuracy_floor):
        fired.append("no trigger configured: every pass with new labels retrains")
    evidence["fired"] = fired
    if not fired:
        return {"retrain": False, "decision": "no drift and live accuracy above the floor", "evidence": evidence}
    if labels < config.loop.min_labels:
        return {"retrain": False, "evidence": evidence,
                "decision": f"{'; '.join(fired)}, but only {labels} labelled text(s) (need {config.loop.min_labels})"}
    if labels <= used:
        return {"retrain": False, "evidence": evidence,
                "decision": f"{'; '.join(fired)}, but no new labels since the last retrain ({used})"}
    return {"retrain": True, "decision": f"retrain: {'; '.join(fired)}; {labels} labelled texts", "evidence": evidence}


def _labels_used(last: dict[str, Any] | None) -> int:
    for step in (last or {}).get("steps", []):
        if step.get("step") == "retrain":
            return int(step.get("data", {}).get("feedback_labels", 0))
    return 0


def retrain(config: Config, reporter: Reporter):
    from .retrain import retrain as run

    return run(config, reporter)


def register(config: Config, run_id: str) -> str:
    from ..registry import versions as registry

    return registry.register(config, run_id=run_id, alias=config.loop.challenger_alias).version


def canary(config: Config, target: Any, version: str, reporter: Reporter) -> dict[str, Any]:
    """`deploy --version N --canary P --observe W --promote-if-healthy`, through the target."""
    from ..targets.base import DeployOptions
    from ..targets.canary_judge import judge_deployed

    outcome = target.deploy(DeployOptions(version=version, canary=config.loop.canary_percent), reporter)
    if outcome.info.get("canary_skipped"):  # the challenger's predictor is what already serves: nothing to judge
        return {"action": "skipped", "reason": outcome.info["canary_skipped"]}
    judged, _ = judge_deployed(config, target, outcome, config.loop.observe, True, reporter)
    return judged.as_dict()


def rollback(config: Config, target: Any, reporter: Reporter) -> Any:
    from ..targets.base import DeployOptions

    return target.deploy(DeployOptions(rollback=True, canary_only=True), reporter)


def promote(config: Config, version: str) -> dict[str, Any]:
    from ..registry import versions as registry

    # force: the registry's own test "beat the champion's test macro F1" would undo, after a healthy canary has
    # already switched serving, what the loop's gate allowed ([loop].max_test_drop); its floors were checked
    # before the canary (retrain.py, registry.champion_rules_refusal).
    ref = registry.promote(config, version, alias=config.registry.champion_alias, force=True)
    return {"version": ref.version, "aliases": ref.aliases}


def log_record(config: Config, run_id: str, record: dict[str, Any]) -> None:
    from .retrain import log_to_run

    log_to_run(config, run_id, record, name="loop.json")

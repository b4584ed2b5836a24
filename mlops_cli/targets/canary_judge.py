"""Judging a canary a target just deployed, through that target's own promote and rollback: what
`mlops deploy --canary N --observe 10m --promote-if-healthy` and `mlops loop` both run."""

from __future__ import annotations

from typing import Any

from ..common.progress import SILENT, Reporter
from ..config.settings import Config
from ..monitoring.canary_watch import PROBE_TEXT, CanaryJudgement, Revisions, judge_canary
from .base import DeployOptions, Outcome, Target


def judge_deployed(config: Config, target: Target, outcome: Outcome, observe: str, act: bool,
                   reporter: Reporter = SILENT, **watch: Any) -> tuple[CanaryJudgement, Outcome]:
    """Watch the canary `outcome` describes; with `act`, promote a healthy one and roll back any other (an
    MlopsError naming why, raised after the rollback). Returns the judgement and the final outcome."""
    promote = (lambda: target.deploy(DeployOptions(promote=True), reporter)) if act else None
    rollback = (lambda: target.deploy(DeployOptions(rollback=True), reporter)) if act else None
    revisions = Revisions(canary=str(outcome.info.get("canary_revision", "")),
                          baseline=str(outcome.info.get("baseline_revision", "")))
    judged = judge_canary(config, canary_version=str(outcome.info.get("model_version", "")), revisions=revisions,
                          window=observe, promote=promote, rollback=rollback,
                          probe=lambda: target.predict([PROBE_TEXT]), reporter=reporter, **watch)
    final = judged.outcome or outcome
    final.info["canary"] = judged.as_dict()
    return judged, final

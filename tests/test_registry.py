"""`mlops register`, `mlops models list|promote|rollback`, `mlops eval`: versions, aliases and the promotion gate."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

POSITIVE = ["great", "excellent", "wonderful", "helpful", "amazing", "effective", "relief", "love"]
NEGATIVE = ["terrible", "awful", "horrible", "useless", "worse", "vomiting", "nausea", "hate"]
FILLER = ["the", "medicine", "i", "took", "it", "for", "weeks", "and", "doctor", "felt", "my", "this"]


def _write_reviews(path: Path, n: int = 160, seed: int = 0) -> None:
    """Reviews whose sentiment words decide the label: a tiny model learns them in a few dozen steps."""
    rng = random.Random(seed)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for i in range(n):
            positive = i % 3 != 0  # 2:1 like the real data
            words = rng.sample(FILLER, 6) + rng.sample(POSITIVE if positive else NEGATIVE, 3)
            rng.shuffle(words)
            writer.writerow([" ".join(words), "Positive" if positive else "Negative"])


@pytest.fixture
def trained_project(project, cli, tiny_base_model):
    """A project with separable reviews and a tiny model that learns them quickly."""
    _write_reviews(project / "reviews.csv")
    (project / "mlops.toml").write_text(
        '[project]\nname = "test-project"\n'
        f'[train]\nbase_model = "{tiny_base_model}"\nmax_length = 32\nbatch_size = 16\n'
        'learning_rate = 2e-3\nhead_learning_rate = 2e-2\nwarmup_ratio = 0.0\n'
        '[registry]\nmin_f1 = 0.6\n')
    assert cli("data", "import", "reviews.csv", "--test-size", "0.3").exit_code == 0
    return project


def _train(cli, *args: str) -> dict:
    result = cli("--json", "train", "--log", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _versions(cli) -> dict[str, dict]:
    result = cli("--json", "models", "list")
    assert result.exit_code == 0, result.stderr
    return {v["version"]: v for v in json.loads(result.stdout)["versions"]}


def test_register_gate_force_and_rollback(trained_project, cli):
    """Acceptance 3, through the CLI."""
    good = _train(cli, "--max-steps", "40")
    good_f1 = good["evaluation"]["metrics"]["macro_f1"]
    assert good_f1 >= 0.9, "the tiny model should learn the separable reviews"

    result = cli("register", "--alias", "champion")
    assert result.exit_code == 0, result.stderr
    versions = _versions(cli)
    assert list(versions) == ["1"] and versions["1"]["aliases"] == ["champion"]
    v1 = versions["1"]
    assert v1["run_id"] == good["run_id"]
    assert v1["metrics"]["macro_f1"] == pytest.approx(good_f1, abs=1e-6)
    assert v1["data_fingerprint"] and v1["created"]
    assert "drift_reference" in v1["tags"], "register must attach the drift reference"

    worse = _train(cli, "--max-steps", "1")
    worse_f1 = worse["evaluation"]["metrics"]["macro_f1"]
    assert worse_f1 < good_f1
    refused = cli("register", "--alias", "champion")
    assert refused.exit_code == 3
    # min_f1 is 0.6: the gate names whichever bar the candidate missed, with the numbers.
    assert f"{worse_f1:.4f}" in refused.stderr
    assert f"{good_f1:.4f}" in refused.stderr or "min_f1 0.6000" in refused.stderr
    assert list(_versions(cli)) == ["1"], "a refused registration creates nothing"

    forced = cli("register", "--alias", "champion", "--force")
    assert forced.exit_code == 0, forced.stderr
    versions = _versions(cli)
    assert versions["2"]["aliases"] == ["champion"] and versions["1"]["aliases"] == []
    assert versions["2"]["run_id"] == worse["run_id"]

    back = cli("models", "rollback")
    assert back.exit_code == 0, back.stderr
    versions = _versions(cli)
    assert versions["1"]["aliases"] == ["champion"] and versions["2"]["aliases"] == []
    nothing_left = cli("models", "rollback")
    assert nothing_left.exit_code == 2 and "no earlier version" in nothing_left.stderr


def test_gate_refuses_a_better_than_champion_but_below_floor_model(trained_project, cli):
    weak = _train(cli, "--max-steps", "1")
    refused = cli("register", "--alias", "champion")
    assert refused.exit_code == 3
    assert f"macro F1 {weak['evaluation']['metrics']['macro_f1']:.4f}" in refused.stderr
    assert "min_f1 0.6000" in refused.stderr
    # Without an alias there is no gate: the version exists, unaliased.
    assert cli("register").exit_code == 0
    assert _versions(cli)["1"]["aliases"] == []


def test_promote_other_alias_and_eval_registered_version(trained_project, cli):
    good = _train(cli, "--max-steps", "40")
    assert cli("register", "--alias", "champion").exit_code == 0
    _train(cli, "--max-steps", "1")
    assert cli("register").exit_code == 0

    gated = cli("models", "promote", "2", "--alias", "champion")
    assert gated.exit_code == 3 and "version 2" in gated.stderr
    staged = cli("models", "promote", "2", "--alias", "staging")
    assert staged.exit_code == 0, staged.stderr
    versions = _versions(cli)
    assert versions["2"]["aliases"] == ["staging"] and versions["1"]["aliases"] == ["champion"]

    # Evaluating the registered champion reproduces training's numbers: same classifier code, same data.
    result = cli("--json", "eval", "--alias", "champion")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["version"]["version"] == "1"
    for key, value in good["evaluation"]["metrics"].items():
        assert out["evaluation"]["metrics"][key] == pytest.approx(value, abs=1e-6, nan_ok=True), key
    table = cli("eval", "--version", "2")
    assert table.exit_code == 0 and "macro F1" in table.stdout

    from mlops_cli.config.loading import load_config
    from mlops_cli.registry import versions as registry

    config = load_config()
    ref = registry.resolve_version(config, alias="champion")
    model_dir = registry.local_model_dir(config, ref)
    assert model_dir.is_relative_to(trained_project / ".mlops" / "models" / "review-sentiment" / "1")
    assert (model_dir / "mlops_classifier.json").is_file()


def test_unknown_version_and_no_runs_are_clear_errors(trained_project, cli):
    result = cli("register")
    assert result.exit_code == 2 and "mlops train --log" in result.stderr
    result = cli("eval", "--version", "7")
    assert result.exit_code == 2 and "no version 7" in result.stderr
    listed = cli("models", "list")
    assert listed.exit_code == 0 and "no versions yet" in listed.stderr


def test_gate_can_require_beating_the_baseline_and_says_by_how_much(trained_project, cli, monkeypatch):
    """Issue 15, acceptance 2: baseline numbers on every version; the gate compares against them."""
    weak = _train(cli, "--max-steps", "3")
    comparison = weak["comparison"]
    assert comparison["delta_macro_f1"] < 0, "3 steps of a tiny model lose to TF-IDF on these reviews"

    monkeypatch.setenv("MLOPS_REGISTRY__MIN_F1", "0.0")
    monkeypatch.setenv("MLOPS_REGISTRY__BEAT_BASELINE", "estimate")
    refused = cli("register", "--alias", "champion")
    assert refused.exit_code == 3
    expected = (f"vs baseline {comparison['baseline_macro_f1']:.4f}: {comparison['delta_macro_f1']:+.4f} "
                f"(95% CI {comparison['delta_macro_f1_ci_low']:+.4f} to {comparison['delta_macro_f1_ci_high']:+.4f})")
    refusal = " ".join(refused.stderr.split())  # rich wraps long lines
    assert "does not beat the TF-IDF baseline" in refusal and expected in refusal
    assert _versions(cli) == {}

    monkeypatch.setenv("MLOPS_REGISTRY__BEAT_BASELINE", "off")
    accepted = cli("register", "--alias", "champion")
    assert accepted.exit_code == 0, accepted.stderr
    assert expected in " ".join((accepted.stdout + accepted.stderr).split())  # the verdict is shown either way
    v1 = _versions(cli)["1"]
    assert v1["versus_baseline"].endswith(expected)
    for key in ("baseline_macro_f1", "baseline_accuracy", "delta_macro_f1", "delta_macro_f1_ci_low",
                "delta_macro_f1_ci_high", "macro_f1_ci_low", "macro_f1_ci_high", "baseline_macro_f1_ci_low"):
        assert v1["metrics"][key] == pytest.approx(comparison.get(key, weak["evaluation"]["metrics"].get(key)),
                                                   abs=1e-6), key

    # `mlops eval` refits the baseline on the same fit rows and reproduces the run's comparison.
    evaluated = cli("--json", "eval", "--version", "1")
    assert evaluated.exit_code == 0, evaluated.stderr
    again = json.loads(evaluated.stdout)["comparison"]
    for key, value in comparison.items():
        assert again[key] == pytest.approx(value, abs=1e-6), key
    table = cli("models", "list")
    assert "vs baseline" in table.stdout and "baseline F1" in table.stdout


def test_mlflow_calls_after_the_preflight_take_their_timeout_and_retries_from_config(project, monkeypatch):
    """MLflow's client reads MLFLOW_HTTP_REQUEST_TIMEOUT / _MAX_RETRIES per request
    (mlflow/environment_variables.py); without them a silent server held a command for 120 s x 7 retries."""
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT

    from mlops_cli.adapters import mlflow_tracking
    from mlops_cli.config.loading import load_config

    for name in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"):
        monkeypatch.delenv(name, raising=False)
    (project / "mlops.toml").write_text("[registry]\nrequest_timeout_s = 7\nrequest_retries = 1\n")
    mlflow_tracking.preflight(load_config())
    assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 7
    assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 1


def test_interrupted_register_is_completed_by_the_next_register(trained_project, cli, monkeypatch):
    """D15: Ctrl-C between creating the version and attaching its drift reference left a version without
    one, and `register` then only said "already registered". Its re-run now attaches the reference."""
    from mlops_cli.registry import versions as registry

    _train(cli, "--max-steps", "2")
    attach = registry._attach_drift_reference

    def interrupted(config, ref):
        raise KeyboardInterrupt  # what Ctrl-C raises in the middle of computing the reference

    monkeypatch.setattr(registry, "_attach_drift_reference", interrupted)
    assert cli("register").exit_code == 130
    assert "drift_reference" not in _versions(cli)["1"]["tags"]

    monkeypatch.setattr(registry, "_attach_drift_reference", attach)
    again = cli("register")
    assert again.exit_code == 0, again.stderr
    assert "completed version 1's missing drift reference" in " ".join(again.stderr.split())
    versions = _versions(cli)
    assert list(versions) == ["1"] and "drift_reference" in versions["1"]["tags"]
    third = cli("register")
    assert third.exit_code == 0 and "completed" not in third.stderr  # once only

    # D5 against a real registry: MLflow raised (a traceback) when asked to set an alias it refuses.
    for args in (["models", "promote", "1", "--alias", "bad alias!"], ["register", "--alias", "bad alias!"],
                 ["models", "promote", "1", "--alias", "v1"]):
        refused = cli(*args)
        assert refused.exit_code == 2 and "--alias:" in refused.stderr, refused.stderr
    assert _versions(cli)["1"]["aliases"] == []

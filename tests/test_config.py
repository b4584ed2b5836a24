"""The typed config: precedence, sources, masking and one-line errors."""

from __future__ import annotations

import json

import pytest

from mlops_cli.common.errors import ConfigError
from mlops_cli.config.loading import load_config

from .support import REPO


def test_shipped_config_validates(cli, monkeypatch):
    monkeypatch.chdir(REPO)
    result = cli("config", "validate")
    assert result.exit_code == 0, result.stderr
    assert "valid" in result.stderr


def test_shipped_config_equals_defaults_for_every_key():
    # Every key in the checked-in mlops.toml is a real field (extra keys are rejected) and is documented.
    cfg = load_config(REPO / "mlops.toml", env={})
    assert cfg.project.target == "local"
    text = (REPO / "mlops.toml").read_text()
    for section in ("project", "data", "train", "registry", "serving", "gateway", "drift", "observability",
                    "local", "kubernetes", "eks"):
        assert f"[{section}]" in text


def test_wrong_type_names_the_field_and_exits_2(cli, project):
    (project / "mlops.toml").write_text('[train]\nepochs = "three"\n')
    result = cli("config", "validate")
    assert result.exit_code == 2
    assert "train.epochs" in result.stderr
    assert "'three'" in result.stderr
    assert str(project / "mlops.toml") in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_unknown_key_is_rejected(cli, project):
    (project / "mlops.toml").write_text("[train]\nepoch = 3\n")
    result = cli("config", "validate")
    assert result.exit_code == 2
    assert "unknown key `train.epoch`" in result.stderr


def test_bad_toml_syntax(cli, project):
    (project / "mlops.toml").write_text("[train\nepochs = 3\n")
    result = cli("config", "validate")
    assert result.exit_code == 2
    assert "invalid TOML" in result.stderr and "mlops.toml" in result.stderr


def test_missing_explicit_file(cli, project):
    result = cli("--config", str(project / "nope.toml"), "config", "validate")
    assert result.exit_code == 2
    assert "nope.toml" in result.stderr


def test_env_overrides_file_and_reports_source(cli, project, monkeypatch):
    (project / "mlops.toml").write_text("[train]\nepochs = 2\n")
    monkeypatch.setenv("MLOPS_TRAIN__EPOCHS", "5")
    result = cli("config", "show", "--json")
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["config"]["train"]["epochs"] == 5
    assert shown["sources"]["train.epochs"] == "env:MLOPS_TRAIN__EPOCHS"
    assert shown["sources"]["train.batch_size"] == "default"


def test_bad_env_value_names_the_variable(cli, project, monkeypatch):
    monkeypatch.setenv("MLOPS_TRAIN__EPOCHS", "many")
    result = cli("config", "validate")
    assert result.exit_code == 2
    assert "MLOPS_TRAIN__EPOCHS" in result.stderr


def test_an_unknown_section_from_the_environment_names_the_variable(cli, project, monkeypatch):
    # issue 26 D20: it was blamed on mlops.toml, which has no [trian]
    monkeypatch.setenv("MLOPS_TRIAN__EPOCHS", "3")
    result = cli("config", "validate")
    assert result.exit_code == 2
    assert "env MLOPS_TRIAN__EPOCHS: unknown section `trian`" in result.stderr
    assert "mlops.toml" not in result.stderr


def test_validation_messages_keep_their_case(cli, project, monkeypatch):
    # issue 26 D39: every message was lower-cased ("expected an mlflow tracking uri")
    monkeypatch.setenv("MLOPS_REGISTRY__TRACKING_URI", "localhost:5000")
    result = cli("config", "validate")
    assert "= 'localhost:5000': expected an MLflow tracking URI: http(s)://host[:port]" in result.stderr
    assert "value error" not in result.stderr.lower()
    monkeypatch.delenv("MLOPS_REGISTRY__TRACKING_URI")
    monkeypatch.setenv("MLOPS_TRAIN__EPOCHS", "many")  # pydantic's own message reads on after the colon
    assert "`train.epochs` = 'many': input should be a valid integer" in cli("config", "validate").stderr


def test_precedence_default_file_env_flag(project):
    (project / "mlops.toml").write_text("[train]\nepochs = 2\nbatch_size = 4\n[eks]\ninstance_types = ['t3.large']\n")
    cfg = load_config(env={"MLOPS_TRAIN__BATCH_SIZE": "8", "MLOPS_EKS__INSTANCE_TYPES": '["c6i.xlarge"]'},
                      overrides={"train.batch_size": 32, "train.seed": None})
    assert cfg.train.epochs == 2 and cfg.source("train.epochs").startswith("file:")
    assert cfg.train.batch_size == 32 and cfg.source("train.batch_size") == "flag"
    assert cfg.eks.instance_types == ["c6i.xlarge"]
    assert cfg.train.seed == 42 and cfg.source("train.seed") == "default"


def test_bad_flag_value_is_a_config_error(project):
    cfg = load_config(env={})
    with pytest.raises(ConfigError, match="train.epochs"):
        cfg.with_overrides({"train.epochs": 0})


def test_coalesced_calls_must_fit_the_predictors_queue(project):
    (project / "mlops.toml").write_text("[serving]\nmax_queue = 8\n")
    with pytest.raises(ConfigError) as info:
        load_config(env={})
    message = str(info.value)
    assert "[gateway].texts_per_call (32) is more than [serving].max_queue (8)" in message
    assert "``" not in message and "{" not in message  # a rule across sections reads as one sentence
    assert load_config(env={"MLOPS_GATEWAY__TEXTS_PER_CALL": "8"}).gateway.texts_per_call == 8


def test_secrets_are_masked_in_show(cli, project, monkeypatch):
    monkeypatch.setenv("MLOPS_GATEWAY_PASSWORD", "hunter2-secret")
    for args in (("config", "show"), ("config", "show", "--json")):
        result = cli(*args)
        assert result.exit_code == 0
        assert "hunter2-secret" not in result.stdout + result.stderr
    shown = json.loads(cli("config", "show", "--json").stdout)
    assert shown["secrets"]["MLOPS_GATEWAY_PASSWORD"] == "********"


def test_relative_paths_resolve_against_the_config_file(project, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(project / "mlops.toml", env={})
    assert cfg.state_dir == project / ".mlops"


def test_json_flag_works_after_the_subcommand(cli, project):
    result = cli("version", "--json")
    assert json.loads(result.stdout)["version"]


@pytest.mark.parametrize("section, key, value", [
    ("drift", "window", "forever"),
    ("drift", "interval", "5"),
    ("drift", "window", "-1h"),
    ("kubernetes", "loki_volume_size", "10GB"),
])
def test_typed_durations_and_quantities_are_checked_at_load(cli, project, section, key, value):
    (project / "mlops.toml").write_text(f'[{section}]\n{key} = "{value}"\n')
    result = cli("config", "validate")
    assert result.exit_code == 2, result.stdout
    assert f"{project / 'mlops.toml'}: `{section}.{key}` = {value!r}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_duration_from_the_environment_names_the_variable(cli, project, monkeypatch):
    monkeypatch.setenv("MLOPS_DRIFT__WINDOW", "forever")
    result = cli("config", "validate")
    assert result.exit_code == 2
    assert "env MLOPS_DRIFT__WINDOW: `drift.window` = 'forever'" in result.stderr
    assert "e.g. 30m, 24h or 7d" in result.stderr


@pytest.mark.parametrize("key", ["window", "interval"])
def test_a_duration_past_a_century_is_refused_at_load(cli, project, key):
    # issue 26 D6: accepted at load, then OverflowError where it was used (datetime / timedelta / a wait)
    (project / "mlops.toml").write_text(f'[drift]\n{key} = "9999999999d"\n')
    result = cli("config", "validate")
    assert result.exit_code == 2
    assert f"`drift.{key}` = '9999999999d'" in result.stderr
    assert "invalid duration '9999999999d': at most 36500d (100 years)" in result.stderr
    (project / "mlops.toml").write_text(f'[drift]\n{key} = "36500d"\n')
    assert getattr(load_config().drift, key) == "36500d"


def test_good_durations_are_kept_as_written():
    cfg = load_config(env={"MLOPS_DRIFT__WINDOW": "1.5h", "MLOPS_DRIFT__INTERVAL": "90s"})
    assert (cfg.drift.window, cfg.drift.interval) == ("1.5h", "90s")

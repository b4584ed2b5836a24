"""CLI conventions a script relies on (issue 14 defects 2, 4, 8, 9, 10): global flags anywhere, config
checked where it loads, progress when nobody watches a terminal, exit codes as the README says."""

from __future__ import annotations

import io
import json
import os
import re

import pytest

from mlops_cli.common.errors import MlopsError

from .support import REPO, free_port, run_subprocess_cli


# -- defect 2: --config / -c after the subcommand ------------------------------------------------

@pytest.mark.parametrize("form", [["--config", "{f}"], ["-c", "{f}"], ["--config={f}"]])
def test_config_flag_works_after_the_subcommand(cli, project, tmp_path, form):
    other = tmp_path / "other.toml"
    other.write_text('[project]\nname = "from-the-flag"\n')
    args = [a.format(f=other) for a in form]
    result = cli("config", "show", "--json", *args)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["config"]["project"]["name"] == "from-the-flag"


def test_config_flag_after_validate_names_the_bad_file(cli, project, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[train]\nepochs = "three"\n')
    result = cli("config", "validate", "-c", str(bad))
    assert result.exit_code == 2 and f"{bad}: `train.epochs`" in result.stderr


def test_no_subcommand_takes_c_or_config_itself():
    # the CLI hoists -c/--config from anywhere before `--`: safe only while no command has its own
    import typer.main

    from mlops_cli.cli.app import app

    def walk(command):
        yield command
        for sub in getattr(command, "commands", {}).values():
            yield from walk(sub)

    root = typer.main.get_command(app)
    taken = [(c.name, p.opts) for c in walk(root) if c is not root for p in c.params
             if {"-c", "--config"} & set(p.opts)]
    assert taken == []


# -- defect 4: URIs are validated where the config loads ----------------------------------------

@pytest.mark.parametrize("value", ["localhost:5000", "not a url", "http://", "ftp://host/x"])
def test_bad_tracking_uri_is_refused_at_load(cli, project, monkeypatch, value):
    monkeypatch.setenv("MLOPS_REGISTRY__TRACKING_URI", value)
    result = cli("config", "validate")
    assert result.exit_code == 2, result.stderr
    assert f"env MLOPS_REGISTRY__TRACKING_URI: `registry.tracking_uri` = {value!r}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("key, value", [("data", 's3_endpoint_url = "127.0.0.1:9000"'),
                                        ("observability", 'otlp_endpoint = "collector:4318"')])
def test_other_urls_are_refused_with_file_and_key(cli, project, key, value):
    (project / "mlops.toml").write_text(f"[{key}]\n{value}\n")
    result = cli("config", "validate")
    assert result.exit_code == 2 and f"{project / 'mlops.toml'}: `{key}." in result.stderr


@pytest.mark.parametrize("value", ["", "http://127.0.0.1:5000", "https://mlflow.example.com/",
                                   "sqlite:////tmp/mlflow.db", "postgresql+psycopg2://u@db/mlflow",
                                   "file:///tmp/mlruns", "databricks"])
def test_good_tracking_uris_load_unchanged(value):
    from mlops_cli.config.loading import load_config

    assert load_config(env={"MLOPS_REGISTRY__TRACKING_URI": value}).registry.tracking_uri == value


# -- defect 8: plain progress lines when stderr is not a terminal -------------------------------

def test_long_work_prints_periodic_plain_progress_when_not_a_tty(cli, project, monkeypatch):
    import time

    from mlops_cli.cli import render
    from mlops_cli.targets.local import LocalTarget

    def slow_predict(self, texts):
        time.sleep(0.15)
        return [{"label": "Positive", "confidence": 0.9, "model_version": "1"} for _ in texts]

    monkeypatch.setattr(LocalTarget, "predict", slow_predict)
    monkeypatch.setattr(render, "PROGRESS_INTERVAL_S", 0.1, raising=False)
    monkeypatch.setenv("MLOPS_GATEWAY__MAX_BATCH", "10")
    (project / "in.csv").write_text("text\n" + "".join(f"review number {i}\n" for i in range(100)))
    result = cli("predict", "--file", "in.csv", "-o", "out.csv")
    assert result.exit_code == 0, result.stderr
    counts = [int(m) for m in re.findall(r"scoring in\.csv: (\d+)/100", result.stderr)]
    assert len(counts) >= 3 and counts == sorted(counts) and counts[0] < 100, result.stderr
    assert "\x1b[" not in result.stderr  # plain lines: no cursor movement or colour in a log file


# -- defect 9: exit codes -------------------------------------------------------------------------

@pytest.mark.parametrize("args, says", [(["predict"], "give either a TEXT"), (["predict", ""], "empty"),
                                        (["predict", "   "], "empty"), (["deploy", "--canary", "0"], "--canary"),
                                        (["logs", "gateway", "-n", "-1"], "-n")])
def test_usage_errors_exit_2(cli, project, args, says):
    result = cli(*args)
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    assert says in result.stderr


def test_gateway_down_is_a_runtime_failure_exit_1(cli, project, monkeypatch):
    monkeypatch.setenv("MLOPS_GATEWAY_PASSWORD", "secret")
    monkeypatch.setenv("MLOPS_LOCAL__GATEWAY_PORT", str(free_port()))
    result = cli("predict", "great product")
    assert result.exit_code == 1, result.stderr
    assert "not reachable" in result.stderr


def test_readme_and_errors_agree_on_exit_codes():
    from mlops_cli.common import errors

    section = REPO.joinpath("README.md").read_text().split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(code): text for code, text in re.findall(r"^\| `?(\d+)`? \| (.+?) \|$", section, re.M)}
    for cls in (c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, MlopsError)):
        assert cls.exit_code in documented, cls.__name__
        assert cls.__name__ in documented[cls.exit_code], (cls.__name__, cls.exit_code)


def _record_component(project, name: str) -> None:
    from mlops_cli.config.loading import load_config
    from mlops_cli.platform.processes import ProcessRecord, ProcessTable

    port = free_port()
    ProcessTable(load_config().state_dir).put(ProcessRecord(
        name=name, port=port, url=f"http://127.0.0.1:{port}", cmd=["true"], log="x.log", started_at=0.0))


def test_status_exits_1_when_a_component_that_should_run_is_dead(cli, project):
    _record_component(project, "gateway")
    result = cli("status")
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "gateway" in result.stdout
    as_json = cli("--json", "status")
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["healthy"] is False


def test_status_of_a_platform_never_started_exits_0(cli, project):
    result = cli("--json", "status")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["healthy"] is True


# -- defect 10 -----------------------------------------------------------------------------------

def test_predict_dash_reads_the_text_from_stdin(cli, project, monkeypatch):
    from mlops_cli.targets.local import LocalTarget

    seen = []
    monkeypatch.setattr(LocalTarget, "predict", lambda self, texts: seen.extend(texts) or
                        [{"label": "Positive", "confidence": 0.9, "model_version": "1"}])
    monkeypatch.setattr("sys.stdin", io.StringIO("a review from a pipe\n"))
    result = cli("predict", "-")
    assert result.exit_code == 0, result.stderr
    assert seen == ["a review from a pipe"]


def test_logs_n_0_prints_no_old_lines(cli, project):
    from mlops_cli.config.loading import load_config

    log_dir = load_config().path(load_config().local.log_dir)
    log_dir.mkdir(parents=True)
    (log_dir / "gateway.log").write_text("old 1\nold 2\nold 3\n")
    assert cli("logs", "gateway", "-n", "0").stdout.strip() == ""
    assert cli("logs", "gateway", "-n", "2").stdout.split() == ["old", "2", "old", "3"]


def test_data_prepare_outside_a_project_creates_nothing(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("data", "prepare")
    assert result.exit_code == 2, result.stderr
    assert "mlops.toml" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_drift_for_an_unknown_version_says_so(cli, registered):
    result = cli("--config", str(registered.config_file), "drift", "--version", "99")
    assert result.exit_code == 2, result.stdout + result.stderr
    assert "version 99" in result.stderr and "not enough data" not in result.stderr


def test_registering_the_same_run_twice_reports_the_existing_version(cli, registered):
    from mlops_cli.config.loading import load_config
    from mlops_cli.registry import versions as registry

    cfg = load_config(registered.config_file, env={})
    run_id = registry.resolve_version(cfg, version=registered.version).run_id
    result = cli("--config", str(registered.config_file), "--json", "register", "--run-id", run_id)
    assert result.exit_code == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["version"] == registered.version and body["already_registered"] is True
    assert [r.version for r in registry.list_versions(cfg)] == [registered.version]


def test_mlflow_chatter_stays_out_of_command_output(project):
    # a fresh embedded store makes MLflow log INFO lines (database set-up) on stderr
    result = run_subprocess_cli("models", "list", cwd=project, timeout=120)
    assert result.returncode == 0, result.stderr
    assert not re.search(r"\b(INFO|WARNING) (mlflow|alembic)", result.stderr), result.stderr


def test_data_status_does_not_call_data_in_no_place_in_sync(cli, project):
    import shutil

    (project / "mlops.toml").write_text('[project]\nname = "test-project"\n[data]\nsources = ["drugscom"]\n')
    assert cli("data", "prepare").exit_code == 0
    shutil.rmtree(project / ".dvc" / "cache")  # a fresh clone: the .dvc file, no cache, nothing pushed
    status = json.loads(cli("--json", "data", "status").stdout)
    assert status["remote"].startswith("missing: neither the remote nor the local cache"), status


# -- issue 26 D3: text that is not UTF-8 ----------------------------------------------------------

@pytest.mark.parametrize("how", ["argv", "stdin"])
def test_predict_text_that_is_not_utf8_is_one_clear_error(project, how):
    """A real process: Python hands undecodable argv bytes (and stdin's under a C.UTF-8 locale) on as lone
    surrogates, which failed as a UnicodeEncodeError traceback when the request was encoded (before any
    connection: the gateway's port here is closed, and the text is refused before it is tried)."""
    import subprocess
    import sys

    bad = b"great \xff product"
    args = [sys.executable, "-m", "mlops_cli", "predict", bad if how == "argv" else "-"]
    proc = subprocess.run(args, input=bad if how == "stdin" else None, cwd=project, capture_output=True,
                          timeout=120, env={**os.environ, "LC_ALL": "C.UTF-8", "MLOPS_GATEWAY_PASSWORD": "secret",
                                            "MLOPS_LOCAL__GATEWAY_PORT": str(free_port())})
    stderr = proc.stderr.decode()
    assert proc.returncode == 2, stderr
    where = "the TEXT argument" if how == "argv" else "the text on stdin"
    assert f"{where} is not valid UTF-8: byte 0xff at position 6" in stderr, stderr
    assert "Traceback" not in stderr and "iconv" in stderr


def test_readme_command_reference_shows_predict_from_stdin():
    """Issue 26: `mlops predict -` (the text from stdin, in predict's --help examples) was missing from the
    README's command reference; `--file -` is new with it."""
    section = REPO.joinpath("README.md").read_text().split("## Command reference", 1)[1].split("\n## ", 1)[0]
    row = next(line for line in section.splitlines() if line.startswith("| `mlops predict"))
    assert "`mlops predict -`" in row and "`--file -`" in row


# -- issue 26 D21: the caller's mistakes exit 2; --json fails with a JSON document --------------------

@pytest.fixture
def lone_gateway(project, tmp_path, monkeypatch):
    """Our real gateway process on loopback with the password 'right' and no predictor: what it refuses
    (401, 413) it refuses before calling one (services/gateway.py)."""
    import os
    import subprocess
    import sys

    from .support import wait_http

    port = free_port()
    monkeypatch.setenv("MLOPS_LOCAL__GATEWAY_PORT", str(port))
    log = (tmp_path / "gateway.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "mlops_cli.services.gateway", "--host", "127.0.0.1", "--port", str(port),
                             "--predictor-url", f"http://127.0.0.1:{free_port()}"], cwd=project,
                            env={**os.environ, "MLOPS_GATEWAY_PASSWORD": "right"}, stdout=log, stderr=log)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        yield
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_wrong_password_and_too_long_text_exit_2(cli, lone_gateway, monkeypatch):
    monkeypatch.setenv("MLOPS_GATEWAY_PASSWORD", "wrong")
    result = cli("predict", "great product")
    assert result.exit_code == 2 and "HTTP 401" in result.stderr, result.stderr
    monkeypatch.setenv("MLOPS_GATEWAY_PASSWORD", "right")
    result = cli("predict", "x" * 6000)  # [gateway].max_chars 5000
    assert result.exit_code == 2 and "HTTP 413" in result.stderr, result.stderr


def test_purge_with_no_terminal_asks_for_yes_and_exits_2(cli, project, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a TTY: nothing can be asked
    result = cli("down", "--purge")
    assert result.exit_code == 2, result.stderr
    assert "no terminal to ask on" in result.stderr and "--yes" in result.stderr
    assert "cancelled" not in result.stderr


@pytest.mark.parametrize("args, code", [(["drift", "--window", "3x"], 2), (["version", "--nope"], 2),
                                        (["predict", "hi"], 1)])
def test_json_failure_is_a_json_document_on_stdout(cli, project, monkeypatch, args, code):
    monkeypatch.setenv("MLOPS_GATEWAY_PASSWORD", "secret")
    monkeypatch.setenv("MLOPS_LOCAL__GATEWAY_PORT", str(free_port()))  # nothing listens: exit 1
    result = cli("--json", *args)
    assert result.exit_code == code, result.stderr
    body = json.loads(result.stdout)
    assert body["ok"] is False and body["error"]["exit_code"] == code and body["error"]["message"]
    assert body["error"]["message"].split("\n")[0] in result.stderr  # and still said to a human


def test_config_validate_json_on_a_bad_file(cli, project):
    (project / "mlops.toml").write_text('[train]\nepochs = "three"\n')
    result = cli("config", "validate", "--json")
    assert result.exit_code == 2
    body = json.loads(result.stdout)
    assert body["valid"] is False and body["file"] == str(project / "mlops.toml")
    assert "`train.epochs` = 'three'" in body["error"]["message"]


# -- issue 26 D22, D26: outside a project; -c without a path ---------------------------------------------

@pytest.mark.parametrize("args", [["predict", "hi"], ["status"], ["logs", "gateway"], ["deploy"], ["up"], ["drift"]])
def test_platform_commands_outside_a_project_say_so(cli, tmp_path, monkeypatch, args):
    # predict aimed at the default port 8080 (maybe someone else's service) and said "no gateway credentials"
    monkeypatch.chdir(tmp_path)
    result = cli(*args)
    assert result.exit_code == 2, result.stderr
    assert f"no mlops.toml in {tmp_path} or any parent directory: `mlops {args[0]}`" in result.stderr
    assert "no gateway credentials" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [["version", "-c"], ["-c"], ["--config"], ["-c", "--json", "status"]])
def test_config_flag_without_a_path_is_one_message(cli, args):
    result = cli(*args)
    assert result.exit_code == 2
    assert f"{args[args.index('-c') if '-c' in args else 0]} needs the path of a config file" in result.stderr


# -- issue 26 D28: --json where it was ignored ------------------------------------------------------------

def test_logs_json_is_one_object_per_line(cli, project):
    from mlops_cli.config.loading import load_config

    log_dir = load_config().path(load_config().local.log_dir)
    log_dir.mkdir(parents=True)
    (log_dir / "gateway.log").write_text('old 1\n{"msg": "old 2"}\n')
    result = cli("logs", "gateway", "-n", "2", "--json")
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"component": "gateway", "line": "old 1"}, {"component": "gateway", "line": '{"msg": "old 2"}'}]


def test_render_json_without_o_prints_the_objects_as_json(cli, project):
    result = cli("--json", "render", "--target", "kubernetes")
    assert result.exit_code == 0, result.stderr
    body = json.loads(result.stdout)
    kinds = {o["kind"] for objects in body["objects"].values() for o in objects}
    assert {"Deployment", "Service"} <= kinds and body["files"] == list(body["objects"])


# -- issue 26: the README's command reference names every option that --help shows ----------------------

def test_command_reference_documents_every_option():
    import typer.main

    from mlops_cli.cli.app import app

    section = REPO.joinpath("README.md").read_text().split("## Command reference", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `mlops ")]

    def commands(group, prefix):
        for name, sub in getattr(group, "commands", {}).items():
            full = f"{prefix} {name}".strip()
            yield from commands(sub, full) if hasattr(sub, "commands") else [(full, sub)]

    missing = {}
    for full, command in commands(typer.main.get_command(app), ""):
        mine = [r for r in rows if re.search(rf"`mlops {re.escape(full.split()[0])}\b", r)]
        for param in command.params:
            opts = [o for o in param.opts if o.startswith("-")]
            if not opts or opts == ["--help"] or (opts[0] == "--target" and "`--target T`" in section):
                continue
            if not any(re.search(rf"{re.escape(o)}\b", r) for o in opts for r in mine):
                missing.setdefault(full, []).append(opts[0])
    assert missing == {}


# -- issue 26: aliases MLflow refuses, and options that exclude each other --------------------------

@pytest.mark.parametrize("alias", ["bad alias", "bad alias!", "latest", "LATEST", "v2", ""])
def test_an_alias_mlflow_refuses_is_refused_where_the_config_loads(cli, project, monkeypatch, alias):
    """D5: MLflow 3.17.2 checks an alias only when it is set (mlflow/utils/validation.py,
    _validate_model_alias_name and _validate_model_alias_name_reserved), as a traceback."""
    monkeypatch.setenv("MLOPS_REGISTRY__CHAMPION_ALIAS", alias)
    result = cli("config", "validate")
    assert result.exit_code == 2, result.stdout + result.stderr
    assert "`registry.champion_alias`" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("alias", ["champion", "staging-2", "blue_green", "v2a", "Ünïcode"])
def test_an_alias_mlflow_accepts_passes_validation(cli, project, monkeypatch, alias):
    monkeypatch.setenv("MLOPS_REGISTRY__CHAMPION_ALIAS", alias)
    result = cli("config", "validate")
    assert result.exit_code == 0, result.stderr


def test_our_alias_rule_is_mlflows(project):
    """The same verdict as MLflow's own validators for every sample (the rule in config/values.py copies them)."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_model_alias_name, _validate_model_alias_name_reserved

    from mlops_cli.config.values import alias_problem

    for alias in ["champion", "a b", "x!", "latest", "Latest", "v1", "V22", "v1x", "-", "_", "é", "a" * 255,
                  "a" * 256, "", "tab\t", "dot.ted", "slash/ed"]:
        try:
            _validate_model_alias_name(alias)
            _validate_model_alias_name_reserved(alias)
            mlflow_ok = True
        except MlflowException:
            mlflow_ok = False
        assert (alias_problem(alias) is None) == mlflow_ok, alias


@pytest.mark.parametrize("args", [
    ["models", "promote", "2", "--alias", "bad alias!"],
    ["register", "--alias", "bad alias!"],
    ["models", "rollback", "--alias", "latest"],
    ["deploy", "--alias", "no spaces please"],
    ["eval", "--alias", "v3"],
])
def test_a_bad_alias_option_is_one_message_before_anything_runs(cli, project, args):
    result = cli(*args)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert "--alias:" in result.stderr and "alias" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args, named", [
    (["deploy", "--rollback", "--version", "1"], "--version and --rollback"),
    (["deploy", "--version", "1", "--alias", "staging"], "--version and --alias"),
    (["deploy", "--alias", "staging", "--rollback"], "--alias and --rollback"),
    (["deploy", "--promote", "--rollback"], "--rollback and --promote"),
    (["eval", "--version", "1", "--alias", "champion"], "--version and --alias"),
])
def test_options_that_exclude_each_other_exit_2_naming_both(cli, project, args, named):
    """D9: `deploy --rollback --version 1` deployed the rollback and ignored --version; --version with
    --alias silently picked one. Now one message, exit 2, as `eval` did."""
    result = cli(*args)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert f"{named} exclude each other" in " ".join(result.stderr.split())

"""What the CLI prints on a terminal or in a log (issue 26): text shown as written, never read as rich markup;
lines never hard-wrapped in logs; headers whole; a check mark an ASCII console can show; --quiet quiet."""

from __future__ import annotations

import io

import pytest
from rich.console import Console


@pytest.fixture
def stderr_as(monkeypatch):
    """Point sys.stderr (where the CLI's rich console writes) at a stream with the given encoding."""
    import sys

    def swap(encoding: str = "utf-8") -> io.TextIOWrapper:
        stream = io.TextIOWrapper(io.BytesIO(), encoding=encoding, errors="backslashreplace", write_through=True)
        monkeypatch.setattr(sys, "stderr", stream)
        return stream

    return swap


def _text(stream: io.TextIOWrapper) -> str:
    return stream.buffer.getvalue().decode(stream.encoding)


# -- D19: [section] names survive -------------------------------------------------------------------

def test_a_config_key_in_a_message_is_not_eaten_as_markup(cli, project):
    # drift with no prediction log: "(need [drift].min_samples = 30)" printed "(need .min_samples = 30)"
    result = cli("drift")
    assert result.exit_code == 0, result.stderr
    assert "(need [drift].min_samples = 30)" in result.stderr


def test_table_cells_titles_notes_and_warnings_show_brackets(stderr_as):
    from mlops_cli.cli import render

    stream = stderr_as()
    render.note("set [kubernetes].kubeconfig")
    render.success("[project].name is set")
    render.PlainReporter().warn("[gateway].max_chars is low")
    render.err.print(render.table("checks [eks]", ["check", "fix"], [("kubeconfig", "set [kubernetes].kubeconfig")]))
    shown = _text(stream)
    for text in ("set [kubernetes].kubeconfig", "[project].name is set", "[gateway].max_chars", "checks [eks]"):
        assert text in shown


# -- D32: a log line is one line ---------------------------------------------------------------------

def test_piped_stderr_keeps_a_long_url_on_one_line(stderr_as):
    from mlops_cli.cli import render

    stream = stderr_as()
    url = "https://mlflow.example.com/" + "/".join(["segment"] * 20) + "/report.html"
    render.note(f"report: {url}")
    render.success(f"wrote 12 files to {url}")
    lines = _text(stream).splitlines()
    assert f"report: {url}" in lines and any(line.endswith(f"wrote 12 files to {url}") for line in lines)


# -- D39: headers whole, a check mark that an ASCII console shows ---------------------------------------

def test_status_headers_are_whole_at_80_columns():
    from mlops_cli.cli import render

    columns = ["component", "url", "pid", "healthy", "version", "uptime", "restarts", "detail"]
    row = ("predictor", "http://127.0.0.1:8081/v1/models/review-sentiment", "123456", "yes", "12", "1h02m",
           "2 (last: terminated by SIGKILL, 14:02:11)", "ready; onnx-int8 runtime, batch 32, queue 256")
    console = Console(file=io.StringIO(), width=80, no_color=True)
    console.print(render.table("mlops status (local)", columns, [row]))
    header = next(line for line in console.file.getvalue().splitlines() if "component" in line)
    for column in columns:
        assert f" {column} " in header, header


def test_the_check_mark_is_plain_text_on_an_ascii_console(stderr_as):
    from mlops_cli.cli import render

    stream = stderr_as("ascii")
    render.success("valid")
    assert _text(stream) == "OK valid\n"
    stream = stderr_as("utf-8")
    render.success("valid")
    assert _text(stream) == "✓ valid\n"


# -- D28: --quiet ----------------------------------------------------------------------------------------

def test_quiet_leaves_out_notes_but_not_results(cli, project):
    assert "valid" in cli("config", "validate").stderr
    quiet = cli("-q", "config", "validate")
    assert quiet.exit_code == 0 and quiet.stderr == ""
    # drift's verdict is its result: shown under -q too
    assert "not enough data for a drift verdict" in cli("-q", "drift").stderr


def test_quiet_outcome_prints_no_info_lines(capsys):
    # `mlops deploy -q` printed "model_version: 3" and "gateway: http://..." after the table
    import click
    import typer

    from mlops_cli.cli import commands_platform, render
    from mlops_cli.cli.state import state
    from mlops_cli.targets import Outcome

    ctx = typer.Context(click.Command("deploy"))
    state(ctx).quiet = True
    render.quiet = True
    try:
        commands_platform._render_outcome(ctx, Outcome(info={"model_version": "3", "gateway": "http://x"}), "t")
    finally:
        render.quiet = False
    assert "model_version" not in capsys.readouterr().err


# -- D39: plurals; one elapsed time ------------------------------------------------------------------------

def test_one_file_and_one_prediction_are_singular(cli, project, monkeypatch):
    from mlops_cli.cli import render

    assert (render.count(1, "prediction"), render.count(2, "prediction"), render.count(0, "file")) == (
        "1 prediction", "2 predictions", "0 files")
    import mlops_cli.platform.batch_predict as batch_predict

    (project / "r.csv").write_text("text\ngreat\n")
    monkeypatch.setattr(batch_predict, "predict_file", lambda *a, **k: {
        "rows": 1, "output": "r.scored.csv", "rows_per_s": 5.0, "skipped": 0, "truncated": 0, "long_rows": []})
    monkeypatch.setenv("MLOPS_GATEWAY_PASSWORD", "x")
    result = cli("predict", "--file", "r.csv")
    assert result.exit_code == 0, result.stderr
    assert "wrote 1 prediction to r.scored.csv" in result.stderr


def test_waiting_for_a_component_shows_the_elapsed_time_once():
    # "starting gateway: working waited=8s, 8.0s elapsed": the wait reported its own clock beside the reporter's
    import inspect

    from mlops_cli.cli import render
    from mlops_cli.platform import processes

    assert "on_tick" not in inspect.signature(processes.wait_until).parameters
    reporter = render.PlainReporter()
    reporter.start("gateway", "starting gateway")
    line = reporter._line(reporter._tasks["gateway"])
    assert line.startswith("starting gateway: working, ") and line.endswith("s elapsed") and "=" not in line

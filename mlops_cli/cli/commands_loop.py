"""`mlops retrain` and `mlops loop`: from labelled feedback and drift to a better model serving, safely."""

from __future__ import annotations

from typing import Any, Optional

import typer

from .state import state

GATE_REFUSED_EXIT_CODE = 3


def register(app: typer.Typer) -> None:
    app.command("retrain")(retrain)
    app.command("loop")(loop)


def retrain(ctx: typer.Context) -> None:
    """Retrain the champion's recipe on the training data plus labelled feedback, and gate the result.

    Builds a new DVC dataset version (the train split + feedback texts, a fresh slice of them held out,
    lineage in sources.json), trains and logs a challenger to MLflow, evaluates challenger, champion and
    the TF-IDF baseline on the original test split and the fresh slice, and applies the gate: the paired
    bootstrap interval on the fresh slice above zero, at most [loop].max_test_drop lost on the test split.
    Exit 3 when the gate refuses; the project's data then goes back to the version it was. Registers
    nothing: `mlops loop` does that for a challenger that passed.

    Examples:

      mlops retrain

      mlops retrain --json | jq .gate
    """
    from ..loop.retrain import retrain as run
    from . import render

    st = state(ctx)
    config = st.project_config("retrain", "reads the project's feedback, dataset and registry")
    with render.RichReporter(enabled=not (st.quiet or st.json)) as reporter:
        result = run(config, reporter)
    if st.json:
        render.print_json(result.as_dict())
    else:
        _show_gate(result.gate)
        if "current" in result.data:
            render.note(result.data["current"].removeprefix("no: "), lead="data:")
    if not result.gate["passed"]:
        raise typer.Exit(GATE_REFUSED_EXIT_CODE)


def _show_gate(gate: dict[str, Any]) -> None:
    from . import render

    fresh, test = gate["fresh"], gate["test"]
    render.show(render.table(f"gate on {gate['metric']}", ["set", "rows", "challenger - champion", "95% interval"], [
        ("fresh slice", fresh["n"], f"{fresh['estimate']:+.4f}", f"[{fresh['low']:+.4f}, {fresh['high']:+.4f}]"),
        ("original test", test["n"], f"{test['difference']:+.4f}", f"(at most -{test['max_drop']})")]))
    if gate["passed"]:
        render.success("gate passed: the challenger is better on fresh data and holds on the test split", result=True)
    else:
        render.note("; ".join(gate["reasons"]), lead="gate refused:", style="bold red", result=True)


def loop(
    ctx: typer.Context,
    once: bool = typer.Option(False, "--once", help="One pass, then exit (cron, CI, the CronJob)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the triggers and say what would happen; change nothing."),
    target: Optional[str] = typer.Option(None, "--target", "-t", help="Where the canary runs (default: [project].target)."),
) -> None:
    """Triggers -> retrain -> gate -> register challenger -> canary -> promote or roll back.

    Triggers: dataset drift ([loop].on_drift), live accuracy under [feedback].accuracy_floor
    ([loop].on_accuracy_floor), and in any case at least [loop].min_labels labelled feedback texts. Every
    step's decision and evidence goes to one JSON record (<state_dir>/loop/) and to the challenger's MLflow
    run. Only one loop runs at a time; the champion alias moves only when the gate and the canary both pass.

    Examples:

      mlops loop --once --dry-run

      mlops loop --once --json

      mlops loop               # every [loop].schedule
    """
    from ..loop.cycle import run_loop
    from . import render

    st = state(ctx)
    config = st.project_config("loop", "reads the project's feedback, dataset and registry")
    from ..targets import get_target

    tgt = None if dry_run else get_target(config, target)
    with render.RichReporter(enabled=not (st.quiet or st.json)) as reporter:
        records = run_loop(config, tgt, once=once, dry_run=dry_run, reporter=reporter)
    last = records[-1]
    if st.json:
        render.print_json(last)
    else:
        for step in last["steps"]:
            render.note(step["decision"], lead=f"{step['step']}:")
        render.note(last["outcome"], lead="outcome:", result=True)

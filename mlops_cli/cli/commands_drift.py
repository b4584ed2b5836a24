"""`mlops drift`: compare recent predictions with the served version's training-time reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from .state import state

DRIFT_EXIT_CODE = 3


def register(app: typer.Typer) -> None:
    app.command("drift")(drift)


def drift(
    ctx: typer.Context,
    window: Optional[str] = typer.Option(None, "--window", "-w",
                                         help="How far back to look, e.g. 30m, 24h, 7d (default: [drift].window)."),
    since: Optional[str] = typer.Option(None, "--since", help="Start of the window as an ISO time (UTC unless an offset is given)."),
    version: Optional[str] = typer.Option(None, "--version",
                                          help="Model version to compare (default: the one that served the latest prediction)."),
    fail_on_drift: bool = typer.Option(False, "--fail-on-drift", help="Exit 3 when dataset drift is detected."),
    strict: bool = typer.Option(False, "--strict", help="With --fail-on-drift: also exit 3 when there is too little data for a verdict."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where to write the Evidently HTML report (default: <state_dir>/drift/report.html)."),
) -> None:
    """Detect drift between the gateway's prediction log and the model version's reference.

    Evidently picks the test per feature (text length, word count, out-of-vocabulary share, predicted
    label, confidence); the dataset drifts when the share of drifted features reaches [drift].drift_share.
    Fewer predictions than [drift].min_samples give no verdict (exit 0, or 3 with --fail-on-drift --strict).

    Examples:

      mlops drift

      mlops drift --window 7d -o drift.html

      mlops drift --since 2026-11-26T08:00 --version 3

      mlops drift --fail-on-drift        # in CI or cron: exit 3 on drift
    """
    from ..common.errors import ConfigError
    from ..monitoring.drift import run_drift
    from . import render

    st = state(ctx)
    if window is not None and since is not None:
        raise ConfigError("--window and --since both given", hint="pass one: --window 24h or --since 2026-11-26T08:00")
    with render.RichReporter(enabled=not (st.quiet or st.json)) as reporter:
        config = st.project_config("drift", "reads the project's prediction log and model registry")
        result = run_drift(config, window=window, since=since, version=version, output=output, reporter=reporter)

    if st.json:
        render.print_json(result.as_dict())
    else:
        _show(result)
    if fail_on_drift and (result.dataset_drift or (strict and not result.has_verdict)):
        raise typer.Exit(DRIFT_EXIT_CODE)


def _show(result: Any) -> None:
    from . import render

    if not result.has_verdict:
        render.note(result.message, lead="no verdict:", style="yellow", result=True)
        return
    render.show(render.table(
        f"drift of model version {result.model_version}: {result.samples} prediction(s)"
        f"{f' (a random sample of {result.compared} compared)' if result.compared < result.samples else ''} vs "
        f"{result.reference_samples} reference row(s)",
        ["feature", "type", "test", "score", "threshold", "drifted"],
        ((f.feature, f.kind, f.method, f"{f.score:.4g}", f"{f.threshold:.4g}", "yes" if f.drifted else "no")
         for f in result.features)))
    render.show(render.table(
        "predicted labels", ["label", "reference", "current"],
        ((s.label, f"{s.reference_share:.1%} ({s.reference_count})", f"{s.current_share:.1%} ({s.current_count})")
         for s in result.labels)))
    if result.other_version_samples:
        render.note(f"{result.other_version_samples} prediction(s) of other versions in the window were not compared")
    render.note(f"report: {result.report_path}")
    if result.dataset_drift:
        render.note(result.message, style="bold red", result=True)
    else:
        render.success(result.message, result=True)

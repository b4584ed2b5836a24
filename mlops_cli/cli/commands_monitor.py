"""`mlops monitor`: live accuracy and macro F1 per serving version on labelled feedback, beside drift."""

from __future__ import annotations

from typing import Any, Optional

import typer

from .state import state

BELOW_FLOOR_EXIT_CODE = 3


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor)


def monitor(
    ctx: typer.Context,
    window: Optional[str] = typer.Option(None, "--window", "-w",
                                         help="How far back to look, e.g. 6h, 24h (default: [feedback].window)."),
    since: Optional[str] = typer.Option(None, "--since", help="Start of the window as an ISO time (UTC unless an offset is given)."),
    drift: bool = typer.Option(True, "--drift/--no-drift", help="Also run the Evidently drift check on the same window."),
    fail_below_floor: bool = typer.Option(False, "--fail-below-floor",
                                          help="Exit 3 when a version's whole accuracy interval is under [feedback].accuracy_floor."),
) -> None:
    """How right each serving version is on the labels users sent back (POST /feedback, `feedback import`).

    Per model version: labels in the window, accuracy and macro F1 with 95% bootstrap intervals (fewer
    labels than [feedback].min_labels: the count only), and whether the whole accuracy interval is under
    [feedback].accuracy_floor; then the drift verdict of `mlops drift` for the same window.

    Examples:

      mlops monitor

      mlops monitor --window 6h --json

      mlops monitor --no-drift --fail-below-floor     # in cron: exit 3 on a real drop
    """
    from ..common.errors import MlopsError
    from ..monitoring.live_quality import live_quality
    from . import render

    st = state(ctx)
    config = st.project_config("monitor", "reads the project's feedback and prediction logs")
    quality = live_quality(config, window=window, since=since)
    result: dict[str, Any] = {"live_quality": quality.as_dict()}
    if drift:
        from ..monitoring.drift import run_drift

        try:
            found = run_drift(config, window=window or config.feedback.window, since=since)
            result["drift"] = found.as_dict()
        except MlopsError as exc:  # no registry or reference yet: the live numbers still stand
            result["drift"] = {"status": "error", "message": str(exc)}
    if st.json:
        render.print_json(result)
    else:
        _show(quality, result.get("drift"))
    if fail_below_floor and any(v.below_floor for v in quality.versions.values()):
        raise typer.Exit(BELOW_FLOOR_EXIT_CODE)


def _interval(value: float | None, bounds: Any) -> str:
    return "-" if value is None else f"{value:.3f} [{bounds[0]:.3f}, {bounds[1]:.3f}]"


def _show(quality: Any, drift: dict[str, Any] | None) -> None:
    from . import render

    if not quality.versions:
        render.note(f"no labelled predictions since {quality.window_start}", lead="live quality:", style="yellow")
    else:
        render.show(render.table(
            f"live quality since {quality.window_start} (floor {quality.accuracy_floor:.2f}, "
            f"min {quality.min_labels} labels)",
            ["version", "labels", "accuracy [95%]", "macro F1 [95%]", "below floor"],
            ((v.model_version, v.labels, _interval(v.accuracy, v.accuracy_interval),
              _interval(v.macro_f1, v.macro_f1_interval), "yes" if v.below_floor else "no")
             for v in quality.versions.values())))
    if quality.text_only_labels:
        render.note(f"{quality.text_only_labels} imported text-only label(s): training data for `mlops retrain`")
    if drift is not None:
        render.note(drift.get("message") or "", lead="drift:", result=True)

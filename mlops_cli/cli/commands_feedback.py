"""`mlops feedback import FILE.csv`: labels in bulk, checked like the gateway's POST /feedback."""

from __future__ import annotations

from pathlib import Path

import typer

from .state import state

app = typer.Typer(help="Labelled feedback on predictions (the gateway takes single labels on POST /feedback).",
                  no_args_is_help=True)


@app.command("import")
def import_file(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="CSV with a label column and a request_id (optionally index) or text column."),
) -> None:
    """Store the labels of FILE, all or nothing.

    A row with request_id labels that logged prediction (index: its text in a /predict/batch request);
    a row with text instead is a labelled review for the next `mlops retrain`. Unknown request ids,
    labels outside the classes, duplicates (already labelled, or twice in the file), non-UTF-8 and files
    over [feedback].import_max_bytes are refused with every bad row named, and nothing is stored.

    Examples:

      mlops feedback import labels.csv          # request_id,label

      mlops feedback import reviewed.csv --json # text,label
    """
    from ..monitoring.feedback_import import import_feedback
    from . import render

    st = state(ctx)
    config = st.project_config("feedback import", "stores labels beside the project's prediction log")
    result = import_feedback(config, file)
    if st.json:
        render.print_json(result)
        return
    render.success(f"stored {render.count(result['stored'], 'label')} from {file} "
                   f"({result['with_prediction']} for logged predictions, {result['text_only']} text only) "
                   f"in {result['feedback_log']}", result=True)

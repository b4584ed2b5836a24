"""`mlops data prepare|import|push|pull|status`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from .state import state

app = typer.Typer(help="Build, import and version the review dataset with DVC.", no_args_is_help=True)


def _counts_table(result: dict[str, Any]):
    from . import render

    counts = result["counts"]
    labels = sorted({label for split in counts.values() for label in split})
    rows = [[split, *(counts[split].get(label, 0) for label in labels), sum(counts[split].values())] for split in counts]
    return render.table(f"dataset {result['path']}", ["split", *labels, "total"], rows)


def _report(ctx: typer.Context, result: dict[str, Any]) -> None:
    from . import render

    if state(ctx).json:
        render.print_json(result)
        return
    render.show(_counts_table(result))
    if result.get("duplicates_dropped"):
        render.note(f"dropped {result['duplicates_dropped']} duplicate review(s): the same text (ignoring case) "
                    "is kept once, the first time it appears, so no review is in both train and test")
    render.success(f"tracked with DVC, md5 {result['md5']}")


def _project_config(ctx: typer.Context, command: str):
    """Commands that create data/, .dvc/ and .mlops/ refuse to do it in whatever directory they run in."""
    return state(ctx).project_config(command, "would create data/, .dvc/ and .mlops/ here")


@app.command("prepare")
def prepare(ctx: typer.Context) -> None:
    """Build the dataset from the packaged review corpora in [data].sources and track it with DVC.

    Sources: drugscom, rotten_tomatoes, tweets, amazon_snippets (the shipped mlops.toml uses the first
    three). Deterministic: the same packages and [data] settings always give byte-identical files.

    Examples:

      mlops data prepare

      MLOPS_DATA__SOURCES='["drugscom"]' mlops data prepare

      MLOPS_DATA__CLASSES=three mlops data prepare
    """
    from ..data import lifecycle as data

    _report(ctx, data.prepare(_project_config(ctx, "data prepare")))


@app.command("import")
def import_(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="CSV or parquet file with your reviews."),
    text_col: str = typer.Option("text", "--text-col", help="Column holding the review text."),
    label_col: str = typer.Option("label", "--label-col", help="Column holding the label."),
    test_size: Optional[float] = typer.Option(None, "--test-size", min=0.01, max=0.99, help="Share held out for test."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Split seed."),
) -> None:
    """Import your own reviews: validate every row, split train/test, track with DVC.

    Nothing is written if any row is invalid; the message names the row.

    Examples:

      mlops data import reviews.csv --text-col review --label-col sentiment

      mlops data import reviews.parquet --test-size 0.3 --seed 7
    """
    from ..data import lifecycle as data

    _report(ctx, data.import_file(_project_config(ctx, "data import"), path, text_col, label_col, test_size, seed))


@app.command("push")
def push(ctx: typer.Context) -> None:
    """Upload the tracked dataset to the DVC remote ([data].remote).

    Examples:

      mlops data push

      MLOPS_DATA__REMOTE=s3://my-bucket/dvc mlops data push
    """
    from ..data import lifecycle as data
    from . import render

    result = data.push(state(ctx).config())
    if state(ctx).json:
        render.print_json(result)
        return
    _warnings(result)
    dataset = f"{result['path']} ({result['files']} files)"
    render.success(f"pushed {dataset} to {result['remote']}" if result["pushed"]
                   else f"{dataset} was already on {result['remote']}")


@app.command("pull")
def pull(ctx: typer.Context) -> None:
    """Download the tracked dataset from the DVC remote into the workspace.

    Examples:

      mlops data pull
    """
    from ..data import lifecycle as data
    from . import render

    result = data.pull(state(ctx).config())
    if state(ctx).json:
        render.print_json(result)
        return
    _warnings(result)
    render.success(f"pulled {result['pulled']} of {result['files']} file(s) into {result['path']} from {result['remote']}"
                   if result["pulled"] else f"{result['path']} is up to date ({result['files']} files)")


def _warnings(result: dict[str, Any]) -> None:
    from . import render

    for line in result["warnings"]:
        render.note(f"dvc: {line}")


@app.command("status")
def status(ctx: typer.Context) -> None:
    """Show whether the dataset is tracked, in sync locally, and pushed to the remote.

    Examples:

      mlops data status

      mlops data status --json
    """
    from ..data import lifecycle as data
    from . import render

    result = data.status(state(ctx).config())
    if state(ctx).json:
        render.print_json(result)
        return
    render.show(render.table("dataset", ["field", "value"], [
        ("path", result["path"]), ("tracked", result["tracked"]), ("workspace", result["workspace"]),
        ("remote", f"{result['remote']} ({result['remote_url']})"), ("md5", result["md5"]),
    ]))

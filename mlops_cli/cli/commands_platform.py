"""`mlops up|down|status|deploy|predict|logs`: written once against the Target interface."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import typer

from .state import state

TARGET_HELP = "Where the platform runs: local | kubernetes | eks (default: [project].target)."


def register(app: typer.Typer) -> None:
    for fn in (up, down, status, deploy, predict, logs):
        app.command(fn.__name__)(fn)


def _target(ctx: typer.Context, name: Optional[str]):
    from ..targets import get_target

    command = ctx.info_name or "this command"
    config = state(ctx).project_config(command, "takes the platform's address, ports, credentials and state from it")
    return get_target(config, name)


def _render_outcome(ctx: typer.Context, outcome: Any, title: str) -> None:
    from . import render

    if state(ctx).json:
        render.print_json(outcome.as_dict())
        return
    if outcome.steps:
        render.show(render.table(title, ["component", "action", "detail"], ((s.name, s.action, s.detail) for s in outcome.steps)))
    for key, value in outcome.info.items():
        if not isinstance(value, (dict, list)):
            render.note(f"{key}: {value}")


def up(
    ctx: typer.Context,
    target: Optional[str] = typer.Option(None, "--target", "-t", help=TARGET_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help="kubernetes: print the plan (create/update/unchanged), write nothing."),
    preview: bool = typer.Option(False, "--preview", help="eks: show the Pulumi preview and cost estimate, then stop."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    with_prometheus: bool = typer.Option(False, "--with-prometheus", help="local: also start Prometheus (Debian package)."),
    reuse_existing: bool = typer.Option(False, "--reuse-existing", help="kubernetes: use a cert-manager, Knative, KServe or edge "
                                        "someone else installed, as it is (down leaves it); without it, up refuses."),
) -> None:
    """Start (or create) the platform on the target. Re-running is safe: it only does what is missing.

    Examples:

      mlops up

      mlops up --target kubernetes --dry-run

      mlops up --target kubernetes --reuse-existing

      mlops up --target eks --preview
    """
    from ..targets import UpOptions
    from . import render

    st = state(ctx)
    tgt = _target(ctx, target)
    with render.RichReporter(enabled=not (st.quiet or st.json)) as reporter:
        outcome = tgt.up(UpOptions(dry_run=dry_run, preview=preview, yes=yes, with_prometheus=with_prometheus,
                                  reuse_existing=reuse_existing), reporter, render.confirm)
    _render_outcome(ctx, outcome, f"mlops up ({tgt.name})")


def down(
    ctx: typer.Context,
    target: Optional[str] = typer.Option(None, "--target", "-t", help=TARGET_HELP),
    purge: bool = typer.Option(False, "--purge", help="Also delete data: the state dir (runs, registry, models, logs) and the DVC cache, keeping the dataset and the DVC remote; CRDs and volumes on a cluster."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    delete_data: bool = typer.Option(False, "--delete-data", help="eks: delete the artifact bucket even if it holds data."),
) -> None:
    """Stop (or destroy) the platform on the target. Data is kept unless --purge.

    Examples:

      mlops down

      mlops down --purge --yes

      mlops down --target eks
    """
    from ..targets import DownOptions
    from . import render

    st = state(ctx)
    tgt = _target(ctx, target)
    with render.RichReporter(enabled=not (st.quiet or st.json)) as reporter:
        outcome = tgt.down(DownOptions(purge=purge, yes=yes, delete_data=delete_data), reporter, render.confirm)
    _render_outcome(ctx, outcome, f"mlops down ({tgt.name})")


def status(
    ctx: typer.Context,
    target: Optional[str] = typer.Option(None, "--target", "-t", help=TARGET_HELP),
) -> None:
    """Show every platform component: URL, pid, health, version, uptime.

    Examples:

      mlops status

      mlops status --json
    """
    from . import render

    tgt = _target(ctx, target)
    components = tgt.status()
    # A health check for scripts: exit 1 when something that should run is not healthy.
    healthy = all(c.healthy or not c.expected for c in components)
    if state(ctx).json:
        render.print_json({"target": tgt.name, "healthy": healthy, "components": [c.as_dict() for c in components]})
        raise typer.Exit(0 if healthy else 1)
    rows = [
        (c.component, c.url, c.pid or "", render.styled("yes", "green") if c.healthy else render.styled("no", "red"), c.version,
         _uptime(c.uptime_s), _restarts(c), c.detail)
        for c in components
    ]
    render.show(render.table(f"mlops status ({tgt.name})",
                             ["component", "url", "pid", "healthy", "version", "uptime", "restarts", "detail"], rows))
    if not components:
        render.note("nothing recorded as running (start the platform with `mlops up`)")
    for c in components:
        if c.log_tail:  # whole lines, below the table: squeezed into a column they would be cut
            render.text_block(f"{c.component}: {c.detail}; the last lines of its log:", c.log_tail)
    raise typer.Exit(0 if healthy else 1)


def _restarts(c: Any) -> str:
    """'2 (last: terminated by SIGKILL, 14:02:11)'; empty where the target does not restart components."""
    if c.restarts is None:
        return ""
    if not c.restarts:
        return "0"
    at = time.strftime("%H:%M:%S", time.localtime(c.last_restart_at)) if c.last_restart_at else ""
    return f"{c.restarts} (last: {c.last_exit or 'exit'}{', ' + at if at else ''})"


def _uptime(seconds: Optional[float]) -> str:
    if seconds is None:
        return ""
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def deploy(
    ctx: typer.Context,
    version: Optional[str] = typer.Option(None, "--version", help="Registered model version to serve."),
    alias: Optional[str] = typer.Option(None, "--alias", help="Serve the version behind this alias (default: [registry].champion_alias)."),
    target: Optional[str] = typer.Option(None, "--target", "-t", help=TARGET_HELP),
    canary: Optional[int] = typer.Option(None, "--canary", min=1, max=99, help="Send this % of traffic to the new version (locally: the gateway splits per request)."),
    promote: bool = typer.Option(False, "--promote", help="Move the canary to 100% (and stop the old version's predictor)."),
    rollback: bool = typer.Option(False, "--rollback", help="Drop a running canary, else go back to the previously deployed version."),
    observe: Optional[str] = typer.Option(None, "--observe", help="With --canary: watch error rate and p99 latency in Prometheus for this long (e.g. 10m)."),
    promote_if_healthy: bool = typer.Option(False, "--promote-if-healthy", help="With --observe: promote a healthy canary, roll back any other (exit 1)."),
) -> None:
    """Serve a registered model version behind the gateway, switching without dropping requests.

    Examples:

      mlops deploy                      # the champion

      mlops deploy --version 3

      mlops deploy --rollback

      mlops deploy --version 4 --target kubernetes --canary 10

      mlops deploy --version 4 -t kubernetes --canary 10 --observe 10m --promote-if-healthy
    """
    from ..targets import DeployOptions
    from . import render

    from .options import checked_alias, exclusive

    exclusive({"--version": version, "--alias": alias, "--rollback": rollback, "--promote": promote},
              hint="mlops deploy --version 3, mlops deploy --alias staging, or mlops deploy --rollback")
    checked_alias(alias)
    st = state(ctx)
    if (observe or promote_if_healthy) and canary is None:
        from ..common.errors import ConfigError

        raise ConfigError("--observe and --promote-if-healthy judge a canary: add --canary N",
                          hint="mlops deploy --version 4 --canary 10 --observe 10m --promote-if-healthy")
    if promote_if_healthy and not observe:
        from ..common.errors import ConfigError

        raise ConfigError("--promote-if-healthy needs an observation window", hint="add --observe 10m")
    tgt = _target(ctx, target)
    options = DeployOptions(version=version, alias=alias, canary=canary, promote=promote, rollback=rollback)
    with render.RichReporter(enabled=not (st.quiet or st.json)) as reporter:
        outcome = tgt.deploy(options, reporter)
        if observe:
            outcome = _judge_canary(ctx, tgt, outcome, observe, promote_if_healthy, reporter)
    _render_outcome(ctx, outcome, f"mlops deploy ({tgt.name})")


def _judge_canary(ctx: typer.Context, tgt: Any, outcome: Any, observe: str, act: bool, reporter: Any) -> Any:
    """Watch the canary just deployed; promote or roll it back through the target (targets/canary_judge.py)."""
    from ..targets.canary_judge import judge_deployed
    from . import render

    st = state(ctx)
    if not st.json:
        _render_outcome(ctx, outcome, f"mlops deploy ({tgt.name})")
    if outcome.info.get("canary_skipped"):  # nothing new serves: no gate to pass or fail
        outcome.info["canary"] = {"decision": "skipped", "reason": outcome.info["canary_skipped"]}
        return outcome
    judged, final = judge_deployed(st.config(), tgt, outcome, observe, act, reporter)
    if not st.json:
        v = judged.verdict
        render.success(f"canary healthy over {observe}: {v.canary.requests} of its requests (needed {v.required}), "
                       f"errors {v.canary.rate or 0:.2%} (baseline {v.baseline.rate or 0:.2%}), p99 {(v.p99_s or 0) * 1000:.0f} ms"
                       + (" - promoted" if judged.action == "promoted" else ""))
    return final


def predict(
    ctx: typer.Context,
    text: Optional[str] = typer.Argument(None, help="A review to classify; - reads it from stdin."),
    file: Optional[Path] = typer.Option(None, "--file", "-f", help="CSV of reviews to classify in batches; - reads it from stdin."),
    text_col: str = typer.Option("text", "--text-col", help="Column of --file holding the text."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where to write the CSV with label and confidence columns (default FILE.scored.csv; - or a --file from stdin: stdout)."),
    target: Optional[str] = typer.Option(None, "--target", "-t", help=TARGET_HELP),
) -> None:
    """Classify a review (or a CSV of reviews) through the deployed gateway.

    Examples:

      mlops predict "this movie was great"

      mlops predict "awful side effects" --json

      mlops predict --file reviews.csv --text-col review -o scored.csv

      echo "works as described" | mlops predict -

      cut -d, -f2- reviews.csv | mlops predict --file - > scored.csv
    """
    import sys

    from ..common.errors import UsageError
    from ..common.text_policy import user_text
    from . import render

    st = state(ctx)
    if (text is None) == (file is None):
        raise UsageError("give either a TEXT argument or --file", hint='mlops predict "great product" or mlops predict --file reviews.csv')
    if text == "-":  # bytes where stdin has them: its text layer may decode with surrogateescape (C locale)
        stdin = getattr(sys.stdin, "buffer", sys.stdin)
        text = user_text(stdin.read(), "the text on stdin").strip()
    elif text is not None:
        text = user_text(text, "the TEXT argument")
    if text is not None and not text.strip():
        raise UsageError("the text to classify is empty", hint='mlops predict "great product", or pipe it: echo "..." | mlops predict -')
    tgt = _target(ctx, target)
    if text is not None:
        result = tgt.predict([text])[0]
        if st.json:
            render.print_json(result)
        else:
            colour = {"Positive": "green", "Negative": "red"}.get(result["label"], "yellow")
            render.out.print(render.Text.assemble(
                (str(result["label"]), f"bold {colour}"),
                f"  confidence {result['confidence']:.2f}  (model version {result.get('model_version', '?')})"), highlight=False)
        return
    from ..platform.batch_predict import predict_file, writes_to_stdout

    if st.json and writes_to_stdout(file, output):
        raise UsageError("--json prints the summary on stdout, where the scored CSV would go",
                         hint="write the CSV to a file: -o scored.csv")
    cfg = st.config()
    with render.RichReporter(enabled=not (st.quiet or st.json)) as reporter:
        summary = predict_file(tgt.predict, file, text_col, output, cfg.gateway.max_batch, reporter,
                               max_chars=cfg.gateway.max_chars, long_text=cfg.serving.long_text)
    if st.json:
        render.print_json(summary)
        return
    long_rows = ", ".join(map(str, summary["long_rows"]))
    if summary["skipped"]:
        render.note(f"skipped {summary['skipped']} row(s) over {cfg.gateway.max_chars} characters (rows {long_rows}"
                    f"{', ...' if summary['skipped'] > len(summary['long_rows']) else ''}): their prediction cells are empty")
    elif summary["truncated"]:
        render.note(f"truncated {summary['truncated']} row(s) to {cfg.gateway.max_chars} characters (rows {long_rows}"
                    f"{', ...' if summary['truncated'] > len(summary['long_rows']) else ''})")
    render.success(f"wrote {render.count(summary['rows'], 'prediction')} to {summary['output']} "
                   f"({summary['rows_per_s']} rows/s)")


def logs(
    ctx: typer.Context,
    component: str = typer.Argument(..., help="Component name, as listed by `mlops status`."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    lines: int = typer.Option(50, "--lines", "-n", min=0, help="How many lines from the end to show first (0: none, with -f only new ones)."),
    target: Optional[str] = typer.Option(None, "--target", "-t", help=TARGET_HELP),
) -> None:
    """Show a component's log.

    Examples:

      mlops logs gateway

      mlops logs mlflow -f

      mlops logs gateway -n 200 --json   # one JSON object per line
    """
    import json
    import sys

    tgt = _target(ctx, target)
    as_json = state(ctx).json
    for chunk in tgt.logs(component, follow=follow, lines=lines):
        # --json: one JSON object per line (JSON Lines), so `-f` streams too; a target may yield several lines at once
        sys.stdout.write("".join(json.dumps({"component": component, "line": line}) + "\n"
                                 for line in chunk.splitlines()) if as_json else chunk)
        sys.stdout.flush()

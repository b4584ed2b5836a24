"""The `mlops` command: global options, the command groups, and one place where errors become exit codes."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator, Optional

import typer

from .. import __version__
from ..common.errors import MlopsError, UsageError
from . import (commands_config, commands_data, commands_doctor, commands_drift, commands_eks, commands_feedback,
               commands_images, commands_lock, commands_loop, commands_monitor, commands_plan, commands_platform,
               commands_render, commands_train)
from .state import state

app = typer.Typer(
    name="mlops",
    help=(
        "One command for a review-sentiment MLOps platform: data, training, registry, serving, drift "
        "and infrastructure, driven by one mlops.toml.\n\n"
        "Examples:\n\n"
        "  mlops up                      # start the local platform\n\n"
        "  mlops data prepare            # build and version the review dataset\n\n"
        "  mlops config show --json      # the effective configuration"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _global(
    ctx: typer.Context,
    config: Optional[str] = typer.Option(
        None, "--config", "-c", envvar="MLOPS_CONFIG", help="Path to mlops.toml (default: ./mlops.toml or a parent's)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output on stdout; logs go to stderr."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More detail (repeat for more)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors and results."),
) -> None:
    from . import render

    st = state(ctx)
    st.config_path, st.json, st.verbose, st.quiet = config, json_out, verbose, quiet
    render.quiet = quiet  # per invocation: tests run many in one process


@app.command("version")
def version(ctx: typer.Context) -> None:
    """Print the mlops version.

    Examples:

      mlops version

      mlops --json version
    """
    if state(ctx).json:
        from .render import print_json

        print_json({"version": __version__})
    else:
        typer.echo(f"mlops {__version__}")


app.add_typer(commands_config.app, name="config")
app.add_typer(commands_data.app, name="data")
app.add_typer(commands_feedback.app, name="feedback")
app.add_typer(commands_images.app, name="images")
commands_doctor.register(app)
commands_platform.register(app)
commands_train.register(app)
commands_drift.register(app)
commands_monitor.register(app)
commands_loop.register(app)
commands_eks.register(app)
commands_render.register(app)
commands_lock.register(app)
commands_plan.register(app)


# Global flags people type after the subcommand too (`mlops data status --json`, `mlops config validate
# -c other.toml`): hoisted to the front, where the app's callback reads them. Safe while no command has an
# option of the same name (tests/test_cli_conventions.py checks).
_VERBOSE = {"--verbose", "-v", "-vv", "-vvv"}
_HOISTED = {"--json", "--quiet", "-q"} | _VERBOSE
_WITH_VALUE = {"--config", "-c"}


def _hoist_global_flags(argv: list[str]) -> list[str]:
    if "--" in argv:
        cut = argv.index("--")
        head, tail = argv[:cut], argv[cut:]
    else:
        head, tail = argv, []
    flags, rest = [], []
    i = 0
    while i < len(head):
        arg = head[i]
        if arg in _HOISTED or arg.startswith("--config="):
            flags.append(arg)
        elif arg in _WITH_VALUE:
            # `mlops -c` and `mlops version -c` said two different things ("requires an argument", "No such
            # option"); a following option is no path either (`mlops -c --json status`).
            if i + 1 >= len(head) or head[i + 1].startswith("-"):
                raise UsageError(f"{arg} needs the path of a config file",
                                 hint="e.g. mlops --config staging.toml status (or set MLOPS_CONFIG)")
            flags += [arg, head[i + 1]]
            i += 1
        else:
            rest.append(arg)
        i += 1
    return flags + rest + tail


@contextmanager
def _quiet_mlflow(verbose: bool) -> Iterator[None]:
    """MLflow configures its loggers when first imported, at INFO unless MLFLOW_LOGGING_LEVEL says
    otherwise (mlflow/utils/logging_utils.py, _configure_mlflow_loggers); its lines would interleave with
    ours on stderr. Quiet for this command unless -v or the user chose a level; restored afterwards."""
    if verbose or "MLFLOW_LOGGING_LEVEL" in os.environ:
        yield
        return
    os.environ["MLFLOW_LOGGING_LEVEL"] = "ERROR"
    try:
        yield
    finally:
        os.environ.pop("MLFLOW_LOGGING_LEVEL", None)


def _json_error(args: list[str], exc: BaseException, exit_code: int) -> None:
    """--json promises stdout a JSON document: on failure it is the error (scripts need not parse stderr)."""
    if "--json" in args:
        from .render import error_object, print_json

        if isinstance(exc, typer.TyperException) and not isinstance(exc, MlopsError):
            exc.message = exc.format_message()  # click's own text ("No such option: --x")
        print_json(error_object(exc, exit_code))


def main(argv: list[str] | None = None) -> None:
    raw = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _hoist_global_flags(raw)
    except UsageError as exc:
        from .render import error

        error(str(exc))
        _json_error(raw, exc, exc.exit_code)
        sys.exit(exc.exit_code)
    try:
        with _quiet_mlflow(not _VERBOSE.isdisjoint(args)):
            rv = app(args=args, prog_name="mlops", standalone_mode=False)
    except MlopsError as exc:
        from .render import error

        error(str(exc))
        _json_error(args, exc, exc.exit_code)
        cause = exc.__cause__ or exc.__context__
        if cause is not None and not _VERBOSE.isdisjoint(args):
            import traceback

            traceback.print_exception(cause, file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        from .render import error

        error("interrupted")
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors: bad option, missing argument
        show = getattr(exc, "show", None)
        if show is None:
            raise
        show()
        _json_error(args, exc, getattr(exc, "exit_code", 2))
        sys.exit(getattr(exc, "exit_code", 2))
    if rv == 130:  # typer turns Ctrl-C into Exit(130) without a word (typer/core.py: `except KeyboardInterrupt`)
        from .render import error

        error("interrupted")
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()

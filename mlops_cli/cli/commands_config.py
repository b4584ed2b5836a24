"""`mlops config show|validate`."""

from __future__ import annotations

import typer

from .state import state

app = typer.Typer(help="Inspect and check the effective configuration.", no_args_is_help=True)


@app.command("show")
def show(ctx: typer.Context) -> None:
    """Print the effective configuration and where each value came from.

    Secrets are read from the environment only and shown masked.

    Examples:

      mlops config show

      MLOPS_TRAIN__EPOCHS=5 mlops config show --json
    """
    from ..common.secrets import present_secrets
    from ..config.settings import flatten
    from . import render

    st = state(ctx)
    cfg = st.config()
    values = flatten(cfg.model_dump())
    sources = cfg.sources()
    if st.json:
        render.print_json(
            {
                "file": str(cfg.file) if cfg.file else None,
                "config": cfg.model_dump(),
                "sources": sources,
                "secrets": present_secrets(),
            }
        )
        return
    render.note(f"config file: {cfg.file or '(none: built-in defaults)'}")
    render.show(render.table(None, ["key", "value", "source"], ((k, repr(v), sources[k]) for k, v in values.items())))
    render.show(render.table("secrets (environment only)", ["variable", "value"], present_secrets().items()))


@app.command("validate")
def validate(ctx: typer.Context) -> None:
    """Check mlops.toml and environment overrides; exit 2 with the field at fault if invalid.

    Examples:

      mlops config validate

      mlops --config staging.toml config validate
    """
    from ..common.errors import ConfigError
    from . import render

    st = state(ctx)
    try:
        cfg = st.config()
    except ConfigError as exc:
        if not st.json:
            raise
        import os

        from ..config.loading import find_config_file

        file = st.config_path or os.environ.get("MLOPS_CONFIG") or find_config_file()
        render.error(str(exc))
        render.print_json({"valid": False, "file": str(file) if file else None, **render.error_object(exc, exc.exit_code)})
        raise typer.Exit(exc.exit_code) from None
    if st.json:
        render.print_json({"valid": True, "file": str(cfg.file) if cfg.file else None})
    else:
        render.success(f"{cfg.file or 'built-in defaults'}: valid")

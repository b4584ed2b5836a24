"""`mlops lock`: record and check the sha256 of the upstream release manifests in mlops.lock."""

from __future__ import annotations

import typer

from .state import state


def register(app: typer.Typer) -> None:
    app.command("lock")(lock)


def lock(
    ctx: typer.Context,
    upgrade: bool = typer.Option(False, "--upgrade", help="Re-read every manifest at the versions in mlops.toml and rewrite its entry."),
) -> None:
    """Record the sha256 of every upstream release manifest (cert-manager, Knative, Kourier, KServe,
    Envoy Gateway) in mlops.lock beside mlops.toml, or check the recorded ones. Commit mlops.lock: every
    later `mlops up --target kubernetes` refuses a file whose sha256 differs from it.

    A new version in mlops.toml is taken only with --upgrade, which downloads the release files of the
    versions mlops.toml names (or reads the offline bundle) and prints each change as old -> new.

    Examples:

      mlops lock

      mlops lock --upgrade

      mlops --json lock
    """
    from charts import upstream

    from . import render

    st = state(ctx)
    config = st.config()
    results = upstream.lock(config, upgrade=upgrade)
    if st.json:
        render.print_json({"lock_file": str(_lock_file(config)), "manifests": [r.as_dict() for r in results]})
        return
    rows = []
    for r in results:
        if r.action == "upgraded" and r.old_version is not None:
            change = f"{r.old_version} {r.old_sha256[:12]}... -> {r.version} {r.sha256[:12]}..."
        elif r.action == "upgraded":
            change = f"(none) -> {r.version} {r.sha256[:12]}..."
        else:
            change = r.action
        rows.append((r.key, r.version, r.sha256, change))
    render.show(render.table(str(_lock_file(config)), ["manifest", "version", "sha256", "change"], rows))
    if any(r.action in ("recorded", "upgraded") for r in results):
        render.note(f"commit {_lock_file(config).name}: later runs check every manifest against it")


def _lock_file(config):
    from charts.manifest_lock import lock_path

    return lock_path(config)

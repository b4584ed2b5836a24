"""`mlops render`: what `up` / `deploy` would apply to a cluster, as YAML files, without a cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .state import state


def register(app: typer.Typer) -> None:
    app.command("render")(render_)


def render_(
    ctx: typer.Context,
    target: Optional[str] = typer.Option(None, "--target", "-t", help="kubernetes or eks (default: [project].target)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Directory for the YAML files (default: stdout)."),
    deploy: bool = typer.Option(False, "--deploy", help="Render what `mlops deploy` applies instead of `mlops up`."),
    version: Optional[str] = typer.Option(None, "--version", help="With --deploy: the registered model version."),
    alias: Optional[str] = typer.Option(None, "--alias", help="With --deploy: the version behind this alias."),
    canary: Optional[int] = typer.Option(None, "--canary", min=1, max=99, help="With --deploy: canary traffic %."),
) -> None:
    """Write every object `mlops up` would apply (or, with --deploy, the InferenceService `mlops deploy`
    would apply) as plain YAML, one file per install step, for GitOps and review. No cluster needed;
    upstream manifests not bundled or cached are listed in index.txt (YAML, named so that
    `kubectl apply -f DIR/` does not read it as a manifest), not downloaded.

    Examples:

      mlops render --target kubernetes -o manifests/

      mlops render --target kubernetes --deploy --version 3 -o manifests/

      mlops render --target kubernetes | kubectl apply --dry-run=server -f -
    """
    from ..common.errors import ConfigError
    from . import render

    st = state(ctx)
    config = st.config()
    name = target or config.project.target
    if name not in ("kubernetes", "eks"):
        # Name what actually chose the target: the flag, or [project].target and where that came from.
        given = f"--target {name}" if target else f"[project].target = {name!r} ({config.source('project.target')})"
        raise ConfigError(f"render needs a cluster target, got {given}", hint="pass --target kubernetes (or eks)")
    if not deploy and (version or alias or canary):
        raise ConfigError("--version, --alias and --canary need --deploy", hint="mlops render --deploy --version N")
    if output is not None:  # before the work: --deploy may first export a version to ONNX (~40 s)
        from ..common.output_path import writable_dir

        writable_dir(output)
    from charts import manifests

    if deploy:
        from ..registry.serving_runtime import served_artifact_uri
        from ..registry.versions import resolve_version

        ref = resolve_version(config, version, alias)
        # What deploy would apply: a version without its onnx-int8 export gets it here, as deploy would.
        with render.RichReporter(enabled=not (st.quiet or st.json)) as reporter:
            served = served_artifact_uri(config, ref, reporter)
        rendered = manifests.deployment(config, version=ref.version, artifact_uri=ref.location, canary=canary,
                                        served_uri=served)
    else:
        rendered = manifests.platform(config)
    if output is None and st.json:  # the objects themselves, by file, with the index
        render.print_json({"objects": rendered.files, **rendered.index()})
    elif output is None:
        import sys

        sys.stdout.write("".join(manifests.as_yaml(objs) for objs in rendered.files.values()))
    else:
        written = manifests.write(rendered, output)
        if st.json:
            render.print_json({"files": [str(p) for p in written], **rendered.index()})
        else:
            render.success(f"wrote {render.count(len(written), 'file')} to {output}")
    for item in rendered.upstream:
        render.note(f"not included (apply it yourself): {item['manifest']} {item['version']} from {item['url']}")
    for secret in rendered.secrets:
        render.note(f"create Secret {secret['namespace']}/{secret['name']} with keys {', '.join(secret['keys']) or '(see docs)'}")

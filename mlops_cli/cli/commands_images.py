"""`mlops images build|list`: our container images (cloud/images.py does the work)."""

from __future__ import annotations

from typing import List, Optional

import typer

from .state import state

app = typer.Typer(help="Build, push and list the platform's container images.", no_args_is_help=True)


@app.command("build")
def build(
    ctx: typer.Context,
    components: Optional[List[str]] = typer.Argument(None, help="Images to build (default: gateway drift predictor mlflow)."),
    push: bool = typer.Option(False, "--push", help="Push to [images].registry and record the digests for up/deploy."),
    tag: Optional[str] = typer.Option(None, "--tag", help="Image tag (default: [images].tag, else the package version)."),
) -> None:
    """Build the images from charts/images/ with docker buildx, podman or buildah.

    With --push, the pushed digests go to [images].record, and `mlops up`/`deploy` then run exactly
    those images. On ECR registries the login uses your AWS credentials; kind.local images are not
    pushed (the e2e script loads them into kind).

    Examples:

      mlops images build

      mlops images build predictor --tag dev

      MLOPS_IMAGES__REGISTRY=ghcr.io/acme mlops images build --push --tag 1.2.0
    """
    from ..cloud.images import build_images, record_path
    from . import render

    st = state(ctx)
    cfg = st.config()
    with render.RichReporter(enabled=not (st.quiet or st.json)) as reporter:
        built = build_images(cfg, tag=tag, push=push, components=components, reporter=reporter)
    if st.json:
        render.print_json({"images": [b.as_dict() for b in built], "record": str(record_path(cfg)) if push else None})
        return
    render.show(render.table("mlops images build", ["image", "reference", "sbom", "size"],
                             ((b.component, b.digest_ref or b.reference, "yes" if b.sbom else "no", _size(b.size_bytes))
                              for b in built)))
    if push:
        render.success(f"recorded the digests in {record_path(cfg)}")


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """Each image: the reference the cluster runs (recorded digest, else the tag) and its size.

    Sizes come from the container engine when one runs; otherwise from the image's Python environment
    as tests/test_image_envs.py builds it (an estimate, marked as such), or are left blank.

    Examples:

      mlops images list

      mlops images list --json
    """
    from ..cloud.images import list_images
    from . import render

    st = state(ctx)
    engine = _engine_if_any()
    rows = list_images(st.config(), engine=engine)
    if st.json:
        render.print_json({"engine": engine.name if engine else None, "images": [r.as_dict() for r in rows]})
        return
    render.show(render.table(f"mlops images ({engine.name if engine else 'no container engine'})",
                             ["image", "reference", "pushed", "size", "size from"],
                             ((r.component, r.reference, "yes" if r.pushed else "no", _size(r.size_bytes), r.size_source)
                              for r in rows)))


def _engine_if_any():
    from ..adapters.container_engine import detect
    from ..common.errors import PreflightError

    try:
        return detect()
    except PreflightError:
        return None


def _size(size: Optional[int]) -> str:
    if size is None:
        return ""
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"

"""Our container images: what each is built from, building and pushing them, and the record of digests.

Each image is `charts/images/<component>.Dockerfile`, built from the repository root, installing
`charts/images/<component>.requirements.txt` under `constraints.txt`. It is tagged
`<[images].registry>/mlops-<component>:<tag>` (charts/image_refs.py's contract). `--push` writes the
pushed digests to `[images].record` so `up`/`deploy` reference images by digest:
{"gateway": "REG/mlops-gateway@sha256:...", ...}.

Example::

    plan = build_plan(cfg, tag="1.2.0")              # what would be built, no engine needed
    built = build_images(cfg, tag="1.2.0", push=True) # needs docker buildx, podman or buildah
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from charts.image_refs import COMPONENTS, IMAGES, LOCAL_REGISTRIES  # the image contract: names, kind-only registries

from ..common.atomic_file import write_atomically
from ..common.errors import ConfigError
from ..common.progress import SILENT, Reporter
from ..config.settings import Config

ENTRYPOINTS = {  # what each image runs: tests/test_image_envs.py imports it in the image's environment
    "gateway": "mlops_cli.services.gateway",
    "drift": "mlops_cli.services.drift_service",
    "predictor": "models.predictor",
    "mlflow": "mlflow.server",
    "cli": "mlops_cli.cli.app",  # `python -m mlops_cli` runs it; importing __main__ would run it here too
}


def source_root() -> Path:
    """The checkout the images build from (the directory holding charts/images/)."""
    import charts

    root = Path(charts.__file__).resolve().parent.parent
    if not (root / "charts" / "images").is_dir() or not (root / "constraints.txt").is_file():
        raise ConfigError(f"no charts/images/ and constraints.txt next to {root}",
                          hint="build images from a source checkout (git clone; pip install -e .)")
    return root


@dataclass(frozen=True)
class ImageSpec:
    component: str
    dockerfile: Path      # relative to the source root
    requirements: Path    # relative to the source root
    entrypoint: str
    tag_ref: str          # REG/mlops-<component>:<tag>


@dataclass
class BuiltImage:
    component: str
    reference: str          # the tag reference that was built
    digest_ref: str = ""    # REG/mlops-<component>@sha256:..., when pushed
    sbom: bool = False
    size_bytes: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def resolve_tag(config: Config, tag: str | None) -> str:
    from .. import __version__

    return tag or config.images.tag or __version__


def build_plan(config: Config, *, tag: str | None = None, components: Iterable[str] | None = None) -> list[ImageSpec]:
    chosen = list(components or (IMAGES if config.loop.schedule else COMPONENTS))  # the loop's CronJob runs `cli`
    unknown = [c for c in chosen if c not in IMAGES]
    if unknown:
        raise ConfigError(f"unknown image {', '.join(unknown)}", hint=f"choose from: {', '.join(IMAGES)}")
    version = resolve_tag(config, tag)
    return [ImageSpec(c, Path("charts/images") / f"{_variant(config, c)}.Dockerfile",
                      Path("charts/images") / f"{_variant(config, c)}.requirements.txt",
                      ENTRYPOINTS[c], f"{config.images.registry}/mlops-{c}:{version}") for c in chosen]


def _variant(config: Config, component: str) -> str:
    """The predictor image carries torch only when the runtime needs it (ONNX by default: ~700 MB less)."""
    return "predictor-torch" if component == "predictor" and config.serving.runtime == "torch" else component


def record_path(config: Config) -> Path:
    from charts.image_refs import record_path as contract_path

    return contract_path(config)


def build_args(tag: str, root: Path) -> dict[str, str]:
    """The Dockerfiles' ARGs: the OCI version and revision labels."""
    return {"VERSION": tag, "REVISION": _git_revision(root)}


def build_images(config: Config, *, tag: str | None = None, push: bool = False, components: Iterable[str] | None = None,
                 engine: Any = None, reporter: Reporter = SILENT) -> list[BuiltImage]:
    """Build (and push) each image; on push, merge the new digests into the record file atomically."""
    from ..adapters import container_engine

    registry = config.images.registry
    if push and registry.split("/", 1)[0] in LOCAL_REGISTRIES:
        raise ConfigError(f"[images].registry = {registry!r} is for images loaded into kind, which are never pushed",
                          hint="drop --push (the e2e script runs `kind load docker-image`), or set [images].registry "
                               "to a registry you own, e.g. ghcr.io/<org>")
    root = source_root()
    plan = build_plan(config, tag=tag, components=components)
    engine = engine or container_engine.detect()
    version = resolve_tag(config, tag)
    args = build_args(version, root)
    log = config.state_dir / "logs" / "images.log"
    if push:
        _login(engine, registry, log)
    built: list[BuiltImage] = []
    for spec in plan:
        reporter.start(f"image:{spec.component}", f"{engine.name}: {spec.tag_ref}", total=None)
        digest_file = container_engine.scratch_file(f"mlops-{spec.component}-") if push else None
        try:
            cmd = engine.build_command(dockerfile=root / spec.dockerfile, context=root, tag=spec.tag_ref,
                                       build_args=args, push=push, metadata_file=digest_file,
                                       platforms=config.images.platforms if push else "",
                                       cache_dir=config.images.cache_dir)
            container_engine.run(cmd, log=log, what=f"building {spec.component} ({engine.name})")
            image = BuiltImage(spec.component, spec.tag_ref, sbom=push and engine.sbom)
            if push:
                push_cmd = engine.push_command(spec.tag_ref, digest_file)
                if push_cmd:
                    container_engine.run(push_cmd, log=log, what=f"pushing {spec.tag_ref}")
                digest = container_engine.pushed_digest(engine, digest_file)
                image.digest_ref = f"{spec.tag_ref.rsplit(':', 1)[0]}@{digest}"
            else:
                image.size_bytes = local_size(engine, spec.tag_ref)
        finally:
            if digest_file is not None:
                digest_file.unlink(missing_ok=True)
        reporter.finish(f"image:{spec.component}", image.digest_ref or "built")
        built.append(image)
    if push:
        write_record(config, {b.component: b.digest_ref for b in built})
    return built


def _login(engine: Any, registry: str, log: Path) -> None:
    from ..adapters import container_engine
    from ..adapters.ecr_login import ecr_login, ecr_region

    if ecr_region(registry) is None:
        return  # GHCR and others: the engine's own credential store (`docker login`, CI's login step)
    from ..adapters.ecr_images import ensure_repositories

    # Before `up --target eks` made them (an engine elsewhere pushes first): the stack adopts them later.
    ensure_repositories(registry, IMAGES, {"managed-by": "mlops"})
    login = ecr_login(registry)
    container_engine.run(engine.login_command(login.host, login.username), log=log,
                         what=f"logging in to {login.host}", stdin=login.password)


def local_size(engine: Any, reference: str) -> int | None:
    cmd = engine.size_command(reference) if engine is not None else None
    if not cmd:
        return None
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = result.stdout.strip()
    return int(text) if result.returncode == 0 and text.isdigit() else None


def write_record(config: Config, pushed: dict[str, str]) -> Path:
    """Merge `pushed` into the record (other components keep their digests) and replace the file atomically."""
    from charts.image_refs import recorded

    path = record_path(config)
    merged = {**recorded(config), **pushed}
    write_atomically(path, json.dumps(dict(sorted(merged.items())), indent=2) + "\n")
    return path


@dataclass
class ImageRow:
    component: str
    reference: str           # what the cluster runs: the recorded digest, else the tag
    dockerfile: str
    pushed: bool
    size_bytes: int | None
    size_source: str         # "engine", "venv estimate" or ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def list_images(config: Config, *, engine: Any = None, env_cache: Path | None = None) -> list[ImageRow]:
    """Each image's reference and size: from the engine when one runs, else the size of the image's
    Python environment built by tests/test_image_envs.py (an estimate of the largest layer, said so)."""
    from charts.image_refs import image_ref, recorded

    pushed = recorded(config)
    rows = []
    for spec in build_plan(config):
        size, source = local_size(engine, spec.tag_ref), "engine"
        if size is None:
            size, source = venv_estimate(spec, env_cache), "venv estimate"
        rows.append(ImageRow(spec.component, image_ref(config, spec.component), str(spec.dockerfile),
                             spec.component in pushed, size, source if size is not None else ""))
    return rows


def image_env_cache() -> Path:
    """Where tests/test_image_envs.py keeps each image's Python environment, keyed by its requirement set.

    Outside the checkout on purpose: CI runs on a fresh clone, and a cache inside it would be rebuilt
    (minutes of installs) on every run.
    """
    return Path.home() / ".cache" / "mlops" / "image-envs"


def venv_estimate(spec: ImageSpec, env_cache: Path | None) -> int | None:
    """Bytes of the newest cached environment for this image's requirement set, if one was built."""
    cache = env_cache or image_env_cache()
    candidates = sorted(cache.glob(f"{spec.component}-*/venv"), key=lambda p: p.stat().st_mtime, reverse=True)
    for venv in candidates:
        if (venv.parent / "ok").exists():
            return sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink())
    return None


def _git_revision(root: Path) -> str:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


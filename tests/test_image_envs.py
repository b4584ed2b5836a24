"""Each image's Python environment, built here without a container engine, imports what the image runs.

The environment is a virtualenv installed from exactly what the Dockerfile installs
(`-r charts/images/<image>.requirements.txt -c constraints.txt`), with only the source folders the
Dockerfile copies on its path. A missing dependency fails here, not in a cluster; the predictor's must
carry none of mlflow, dvc, evidently, pulumi (its cold start is what scale-from-zero users wait for).

Environments are cached in ~/.cache/mlops/image-envs/<image>-<hash of requirements + constraints + python>/
(outside the checkout, so CI's fresh clones reuse them): only a changed requirement set is installed
again. The first build of all four installs from PyPI and takes minutes (about 5 on the 2-core machine).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from mlops_cli.cloud.images import image_env_cache

from .import_graph import reachable
from .support import REPO

IMAGES = REPO / "charts" / "images"
CACHE = image_env_cache()  # ~/.cache/mlops/image-envs: survives fresh clones (CI), keyed by requirement set
ENTRYPOINTS = {
    "gateway": "mlops_cli.services.gateway",
    "drift": "mlops_cli.services.drift_service",
    "predictor": "models.predictor",
    "mlflow": "mlflow.server",
    "cli": "mlops_cli.cli.app",  # `python -m mlops_cli` runs it; importing __main__ would run it here too
}
# Modules our code imports on paths the image never takes, each with the reason. Anything else reachable
# from the entrypoint must import in the image's environment.
NOT_ON_THE_IMAGE_PATH = {
    "gateway": {},  # its text cleaning is common/text_policy.py's, which reads no files
    "predictor": {
        "torch": "models/classifier.py serves [serving].runtime = \"torch\" only: predictor-torch.Dockerfile adds torch",
        "safetensors.torch": "same: the torch runtime's weights",
    },
    "drift": {
        "torch": "registry/drift_reference.py profiles a model's predictions when a version is registered; the service downloads that reference",
        "transformers": "same: reference building at registration time",
        "safetensors.torch": "same: reference building at registration time",
        "transformers.utils": "same: reference building at registration time",
        "mlflow.pyfunc": "adapters/mlflow_tracking.py logs models during training; the service only reads artifacts",
        "mlflow.models": "same: model logging at training time",
        "mlflow.types": "same: model signatures at training time",
    },
    "mlflow": {},
    "cli": {  # the whole CLI is reachable from `mlops`; the loop's CronJob runs `mlops loop --once -t kubernetes`
        "torch": "cli.Dockerfile installs it from PyTorch's CPU index (not PyPI, so not in the locked set)",
        "safetensors.torch": "same: torch's weights",
        "pulumi": "the eks target's provisioning (stacks/), never run by the loop",
        "pulumi_aws": "same: the eks stack",
        "pulumi_kubernetes": "same: the eks stack",
        "supervisor.xmlrpc": "the local target's process supervisor, not used in a cluster",
    },
}
EXTRA_IMPORTS = {"mlflow": ["boto3", "psycopg"]}  # what the server needs for S3 artifacts and a PostgreSQL backend
FORBIDDEN = {
    "predictor": {"torch", "mlflow", "mlflow-skinny", "dvc", "evidently", "pulumi", "pulumi-aws", "pulumi-eks", "pulumi-kubernetes"},
    "gateway": {"torch", "mlflow", "mlflow-skinny", "dvc", "evidently", "pulumi", "kserve"},
    "drift": {"torch", "dvc", "pulumi", "kserve", "mlflow"},  # the MLflow client (mlflow-skinny), not the server
    "mlflow": {"torch", "dvc", "evidently", "pulumi", "kserve"},
    "cli": {"kserve", "supervisor", "pulumi", "pulumi-aws", "pulumi-eks", "pulumi-kubernetes"},
}


def _key(image: str) -> str:
    digest = hashlib.sha256()
    for part in ((IMAGES / f"{image}.requirements.txt").read_bytes(), (REPO / "constraints.txt").read_bytes(),
                 sys.version.encode()):
        digest.update(part)
    return f"{image}-{digest.hexdigest()[:16]}"


def image_env(image: str) -> Path:
    """The cached environment for `image`, built (atomically: built aside, then renamed) when missing."""
    final = CACHE / _key(image)
    if (final / "ok").exists():
        return final / "venv"
    CACHE.mkdir(parents=True, exist_ok=True)
    for stale in CACHE.glob(f"{image}-*"):  # an older requirement set: no longer what the image installs
        if stale != final:
            shutil.rmtree(stale, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=f".{image}-", dir=CACHE))
    try:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(work / "venv")], check=True, timeout=120)
        result = subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(work / "venv" / "bin" / "python"), "install", "--quiet",
             "--no-compile", "--disable-pip-version-check",
             "-r", str(IMAGES / f"{image}.requirements.txt"), "-c", str(REPO / "constraints.txt")],
            capture_output=True, text=True, timeout=1500)
        assert result.returncode == 0, f"installing the {image} image's requirements failed:\n{result.stderr[-3000:]}"
        (work / "ok").touch()
        try:
            work.rename(final)
        except OSError:  # another run finished first: use its environment
            pass
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final / "venv"


def copied_sources(image: str) -> list[str]:
    """The top-level source folders the Dockerfile copies into /app (its PYTHONPATH)."""
    text = (IMAGES / f"{image}.Dockerfile").read_text()
    return re.findall(r"^COPY (\w+) /app/\1$", text, flags=re.M)


PROBE = r"""
import importlib, importlib.metadata, json, sys
entry, modules = sys.argv[1], json.loads(sys.argv[2])
failed = {}
for name in [entry, *modules]:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"
dists = sorted({(d.metadata["Name"] or "").lower().replace("_", "-") for d in importlib.metadata.distributions()})
print(json.dumps({"failed": failed, "dists": dists, "path": sys.path}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("image", list(ENTRYPOINTS))
def test_image_environment_imports_its_entrypoint(image, tmp_path):
    venv = image_env(image)
    app = tmp_path / "app"  # what the image has in /app, nothing else of the repository
    app.mkdir()
    for folder in copied_sources(image):
        (app / folder).symlink_to(REPO / folder)
    if image == "mlflow":
        modules = set(EXTRA_IMPORTS["mlflow"])
    else:
        ours, third = reachable(REPO, ENTRYPOINTS[image])
        missing_copies = {m.split(".")[0] for m in ours} - set(copied_sources(image))
        assert not missing_copies, f"{image}: the entrypoint imports {missing_copies} but the Dockerfile does not copy them"
        modules = third - set(NOT_ON_THE_IMAGE_PATH[image])
    env = {"PATH": f"{venv}/bin:/usr/bin:/bin", "PYTHONPATH": str(app), "PYTHONNOUSERSITE": "1", "HOME": str(tmp_path),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run([str(venv / "bin" / "python"), "-c", PROBE, ENTRYPOINTS[image], json.dumps(sorted(modules))],
                            capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["failed"] == {}, f"{image}: not importable in the image's environment: {report['failed']}"
    assert not any(p.startswith(str(REPO / ".venv")) for p in report["path"])
    carried = FORBIDDEN[image] & set(report["dists"])
    assert not carried, f"{image} image carries {sorted(carried)}"


def test_the_predictor_requirements_are_what_models_needs_and_no_more():
    # The predictor's set is the contract with models/ (perf edits both): everything listed is imported
    # somewhere on the predictor's path, so nothing rides along by habit.
    listed = {line.split("[")[0].strip().lower() for line in (IMAGES / "predictor.requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    _, third = reachable(REPO, ENTRYPOINTS["predictor"])
    tops = {m.split(".")[0].replace("_", "-") for m in third} | {"opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http"}
    assert listed <= tops, f"listed but never imported on the predictor's path: {sorted(listed - tops)}"

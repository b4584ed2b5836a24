"""`mlops images build|list`: engine detection, the exact build/push commands, the digest record.

No container engine runs here, so the engines are fakes on PATH that record every call and refuse what
the real ones refuse: a Dockerfile or context that does not exist, pushing to ECR before logging in,
a build while the daemon is down.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from .support import REPO

FAKE_ENGINE = r'''#!{python}
"""A fake {name}: logs argv (one JSON line) to $FAKE_ENGINE_LOG and behaves like the real one would."""
import hashlib, json, os, sys
name, args = "{name}", sys.argv[1:]
state = os.environ["FAKE_ENGINE_LOG"] + ".state"
with open(os.environ["FAKE_ENGINE_LOG"], "a") as log:
    log.write(json.dumps([name, *args]) + "\n")

def fail(msg, code=1):
    sys.stderr.write(msg + "\n"); sys.exit(code)

def flag(opt):
    for i, a in enumerate(args):
        if a == opt:
            return args[i + 1]
        if a.startswith(opt + "="):
            return a.split("=", 1)[1]

def logged_in(ref):
    host = ref.split("/", 1)[0]
    if ".dkr.ecr." in host and not (os.path.exists(state) and host in open(state).read().split()):
        fail(f"denied: Your authorization token has expired. Reauthenticate and try again. ({{host}})")

def digest(ref):
    return "sha256:" + hashlib.sha256(ref.encode()).hexdigest()

if os.environ.get("FAKE_DAEMON_DOWN") and args[:1] in (["info"], ["build"], ["buildx"]):
    fail("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?")
if args[:1] == ["info"] or args[:1] == ["version"] or args[:2] == ["buildx", "version"]:
    print("fake 1.0"); sys.exit(0)
if args[:1] == ["login"]:
    password = sys.stdin.read()
    if not password or flag("--username") is None or "--password-stdin" not in args:
        fail("Error: Cannot perform an interactive login from a non TTY device")
    open(state, "a").write(args[-1] + "\n"); sys.exit(0)
build = args[2:] if args[:2] == ["buildx", "build"] else args[1:] if args[:1] == ["build"] else None
if build is not None:
    dockerfile, context, tag = flag("--file"), build[-1], flag("--tag")
    if not os.path.isfile(dockerfile):
        fail(f"ERROR: failed to read dockerfile: open {{dockerfile}}: no such file or directory")
    if not os.path.isdir(context):
        fail(f"ERROR: unable to prepare context: path {{context!r}} not found")
    if os.environ.get("FAKE_FAIL_BUILD") and os.environ["FAKE_FAIL_BUILD"] in dockerfile:
        fail("ERROR: failed to solve: process \"/bin/sh -c pip install\" did not complete successfully: exit code: 1")
    if "--push" in build:
        logged_in(tag)
        with open(flag("--metadata-file"), "w") as fh:
            json.dump({{"containerimage.digest": digest(tag), "image.name": tag}}, fh)
    sys.exit(0)
if args[:1] == ["push"]:
    logged_in(args[-1])
    open(flag("--digestfile"), "w").write(digest(args[-1]))
    sys.exit(0)
if args[:2] == ["image", "inspect"]:
    print(123456789); sys.exit(0)
fail(f"{{name}}: unknown command {{args}}", 125)
'''


def install_fake(bin_dir: Path, name: str) -> None:
    path = bin_dir / name
    path.write_text(FAKE_ENGINE.format(python=sys.executable, name=name))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def fake_path(tmp_path, monkeypatch):
    """A PATH with only our fakes, git and python: no real engine can answer."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git",):
        real = subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip()
        if real:
            (bin_dir / tool).symlink_to(real)
    log = tmp_path / "engine-calls.jsonl"
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FAKE_ENGINE_LOG", str(log))

    def calls() -> list[list[str]]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return bin_dir, calls


@pytest.fixture
def docker_calls(fake_path):
    """The fake docker (with buildx) as the only engine on PATH; the fixture lists the calls it got."""
    bin_dir, calls = fake_path
    install_fake(bin_dir, "docker")
    return calls


def test_no_engine_exits_2_naming_every_engine_looked_for(cli, project, fake_path):
    result = cli("images", "build")
    assert result.exit_code == 2
    for engine in ("docker buildx", "podman", "buildah"):
        assert engine in result.stderr
    assert "Traceback" not in result.stderr


def test_docker_whose_daemon_does_not_answer_counts_as_none(cli, project, docker_calls, monkeypatch):
    monkeypatch.setenv("FAKE_DAEMON_DOWN", "1")
    result = cli("images", "build")
    assert result.exit_code == 2
    assert "the daemon does not answer" in result.stderr and "Cannot connect to the Docker daemon" in result.stderr
    assert not any(c[1:3] == ["buildx", "build"] for c in docker_calls())


def test_buildx_build_commands_for_every_image(cli, project, docker_calls):
    result = cli("images", "build", "--tag", "1.2.3")
    assert result.exit_code == 0, result.stderr
    builds = [c for c in docker_calls() if c[1:3] == ["buildx", "build"]]
    assert [b[b.index("--tag") + 1] for b in builds] == [
        f"kind.local/mlops-{c}:1.2.3" for c in ("gateway", "drift", "predictor", "mlflow")]
    for build, component in zip(builds, ("gateway", "drift", "predictor", "mlflow")):
        assert build[build.index("--file") + 1] == str(REPO / "charts" / "images" / f"{component}.Dockerfile")
        assert build[-1] == str(REPO)                       # context: the repository root (.dockerignore applies)
        assert "--build-arg=VERSION=1.2.3" in build
        assert any(a.startswith("--build-arg=REVISION=") for a in build)
        assert "--load" in build and "--push" not in build  # not pushed: loaded for kind
    assert not (project / ".mlops" / "images.json").exists()


def test_kind_local_images_are_never_pushed(cli, project, docker_calls):
    result = cli("images", "build", "--push")
    assert result.exit_code == 2 and "kind" in result.stderr
    assert docker_calls() == []


def test_push_records_digests_atomically_and_keeps_other_entries(cli, project, docker_calls, monkeypatch):
    monkeypatch.setenv("MLOPS_IMAGES__REGISTRY", "ghcr.io/acme")
    record = project / ".mlops" / "images.json"
    record.parent.mkdir()
    record.write_text(json.dumps({"mlflow": "ghcr.io/acme/mlops-mlflow@sha256:" + "a" * 64}))
    result = cli("images", "build", "gateway", "predictor", "--push", "--tag", "2.0.0")
    assert result.exit_code == 0, result.stderr
    builds = [c for c in docker_calls() if c[1:3] == ["buildx", "build"]]
    for build in builds:
        assert {"--push", "--sbom=true", "--provenance=mode=max"} <= set(build) and "--load" not in build
    data = json.loads(record.read_text())
    assert set(data) == {"gateway", "predictor", "mlflow"}
    assert data["mlflow"].endswith("a" * 64)
    assert data["gateway"].startswith("ghcr.io/acme/mlops-gateway@sha256:") and len(data["gateway"].split("@sha256:")[1]) == 64
    assert not list(record.parent.glob(".images.json.*"))  # no temp file left

    # up/deploy take these references (charts/image_refs.py reads the same record)
    from charts.image_refs import image_ref
    from mlops_cli.config.loading import load_config

    assert image_ref(load_config(), "gateway") == data["gateway"]


def test_podman_builds_then_pushes_with_a_digest_file(cli, project, fake_path, monkeypatch):
    bin_dir, calls = fake_path
    install_fake(bin_dir, "podman")
    monkeypatch.setenv("MLOPS_IMAGES__REGISTRY", "registry.example.com/team")
    result = cli("images", "build", "drift", "--push", "--tag", "3")
    assert result.exit_code == 0, result.stderr
    seq = [c for c in calls() if c[1] in ("build", "push")]
    assert [c[1] for c in seq] == ["build", "push"]
    assert seq[0][seq[0].index("--tag") + 1] == "registry.example.com/team/mlops-drift:3"
    assert seq[1][-1] == "registry.example.com/team/mlops-drift:3" and "--digestfile" in seq[1]
    recorded = json.loads((project / ".mlops" / "images.json").read_text())
    assert recorded["drift"].startswith("registry.example.com/team/mlops-drift@sha256:")


def test_buildah_is_the_last_resort(cli, project, fake_path):
    bin_dir, calls = fake_path
    install_fake(bin_dir, "buildah")
    result = cli("images", "build", "gateway")
    assert result.exit_code == 0, result.stderr
    assert [c[:2] for c in calls()] == [["buildah", "version"], ["buildah", "build"]]


def test_a_failed_build_exits_1_with_the_engines_last_lines_and_records_nothing(cli, project, docker_calls, monkeypatch):
    monkeypatch.setenv("MLOPS_IMAGES__REGISTRY", "ghcr.io/acme")
    monkeypatch.setenv("FAKE_FAIL_BUILD", "predictor")
    result = cli("images", "build", "--push")
    assert result.exit_code == 1
    assert "building predictor" in result.stderr and "did not complete successfully" in result.stderr
    assert "images.log" in result.stderr
    assert not (project / ".mlops" / "images.json").exists()


def test_unknown_image_name_exits_2(cli, project, docker_calls):
    result = cli("images", "build", "frontend")
    assert result.exit_code == 2 and "gateway, drift, predictor, mlflow" in result.stderr


def test_list_reports_references_and_engine_sizes(cli, project, docker_calls):
    result = cli("--json", "images", "list")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["engine"] == "docker buildx"
    assert [(i["component"], i["size_bytes"], i["size_source"]) for i in data["images"]] == [
        (c, 123456789, "engine") for c in ("gateway", "drift", "predictor", "mlflow")]


# ---------------------------------------------------------------------------------------------- ECR


@pytest.fixture
def aws_endpoint(s3_endpoint, monkeypatch):
    """The suite's moto server (conftest) as the AWS endpoint: ECR's GetAuthorizationToken answers there."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return s3_endpoint


def test_ecr_push_logs_in_with_the_stacks_credentials_on_stdin(cli, project, docker_calls, aws_endpoint, monkeypatch):
    registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/review-sentiment"
    monkeypatch.setenv("MLOPS_IMAGES__REGISTRY", registry)
    result = cli("images", "build", "predictor", "--push", "--tag", "4")
    assert result.exit_code == 0, result.stderr
    logins = [c for c in docker_calls() if c[1] == "login"]
    assert logins == [["docker", "login", "--username", "AWS", "--password-stdin", "123456789012.dkr.ecr.eu-west-1.amazonaws.com"]]
    assert docker_calls().index(logins[0]) < next(i for i, c in enumerate(docker_calls()) if c[1:3] == ["buildx", "build"])
    recorded = json.loads((project / ".mlops" / "images.json").read_text())
    assert recorded["predictor"].startswith(f"{registry}/mlops-predictor@sha256:")


def test_ecr_push_without_credentials_is_a_preflight_error(cli, project, docker_calls, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("MLOPS_IMAGES__REGISTRY", "123456789012.dkr.ecr.us-east-1.amazonaws.com/p")
    result = cli("images", "build", "gateway", "--push")
    assert result.exit_code == 2 and "AWS credentials" in result.stderr
    assert not any(c[1:3] == ["buildx", "build"] for c in docker_calls())

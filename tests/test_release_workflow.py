"""The release path: only after green CI, one production deploy at a time, signed and attested by digest,
no secret ever printed (the rendered run scripts are grepped), hash-locked image requirements.
Upstream facts: GitHub Actions reusable workflows (`uses: ./.github/workflows/x.yml` with `needs`) and job
`concurrency` (docs.github.com, "Reusing workflows", "Using concurrency"); cosign keyless (sigstore/cosign)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml

from tests.support import REPO

CI = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
RELEASE = yaml.safe_load((REPO / ".github" / "workflows" / "release.yml").read_text())
DIGEST = "ghcr.io/acme/mlops-gateway@sha256:" + "a" * 64


def _on(flow: dict) -> dict:
    return flow.get("on", flow.get(True))  # YAML 1.1 reads a bare `on` key as True


def test_release_runs_only_after_every_ci_job_and_only_for_main_or_tags():
    assert set(_on(RELEASE)) == {"workflow_call"}  # nothing else can start it
    job = CI["jobs"]["release"]
    assert job["uses"] == "./.github/workflows/release.yml"
    assert set(job["needs"]) == set(CI["jobs"]) - {"release"}
    assert job["if"] == ("github.event_name == 'push' && (github.ref == 'refs/heads/main' || "
                         "startsWith(github.ref, 'refs/tags/v'))")
    assert _on(CI)["push"] == {"branches": ["main"], "tags": ["v*"]}
    assert CI["concurrency"]["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"


def test_one_production_deploy_at_a_time_never_cancelled():
    canary = RELEASE["jobs"]["canary"]
    assert canary["environment"] == "production"
    assert canary["concurrency"] == {"group": "production", "cancel-in-progress": False}


def _runs(flow: dict) -> list[tuple[str, dict, str]]:
    out = []
    for name, job in flow["jobs"].items():
        for step in job.get("steps", []):
            if "run" in step:
                out.append((name, {**job.get("env", {}), **step.get("env", {})}, step["run"]))
    return out


@pytest.mark.parametrize("flow", [CI, RELEASE], ids=["ci", "release"])
def test_no_secret_is_ever_printed(flow):
    for job, env, script in _runs(flow):
        assert "secrets." not in script, f"{job}: a secret expanded into a run script (use env)"
        secret_vars = {k for k, v in env.items() if "secrets." in str(v)}
        for var in secret_vars:
            for line in script.splitlines():
                if re.search(rf"\${{?{var}\b", line) is None:
                    continue
                # allowed: tests of emptiness, and a pipe or redirect into a file, never stdout or the log
                printed = re.search(r"\b(echo|printf|cat)\b", line) and not re.search(r"(\||>\s*\"?\$RUNNER_TEMP)", line)
                assert not printed and "set -x" not in script, f"{job}: {var} may reach the log: {line.strip()}"


def test_up_output_goes_to_a_file_and_the_password_comes_from_the_environment():
    canary = RELEASE["jobs"]["canary"]
    assert canary["env"]["MLOPS_GATEWAY_PASSWORD"] == "${{ secrets.MLOPS_GATEWAY_PASSWORD }}"
    ups = [s for _, _, s in _runs(RELEASE) if "mlops up" in s]
    assert ups and all(re.search(r"mlops up [^\n]*> \"\$RUNNER_TEMP/up\.log\"", s) for s in ups)


def test_every_pushed_digest_is_signed_and_its_sbom_attested():
    images = RELEASE["jobs"]["images"]
    assert images["permissions"]["id-token"] == "write"  # keyless: the workflow's OIDC identity
    assert any(s.get("run") == "python scripts/sign_images.py .mlops/images.json" for s in images["steps"])
    assert any(str(s.get("uses", "")).startswith("sigstore/cosign-installer@") for s in images["steps"])
    build = next(s for s in images["steps"] if s.get("id") == "build")
    assert build["env"]["MLOPS_IMAGES__PLATFORMS"] == "linux/amd64,linux/arm64"


def test_the_sign_script_signs_and_attests_by_digest_only(tmp_path):
    from scripts.sign_images import digest_refs

    record = tmp_path / "images.json"
    record.write_text(json.dumps({"gateway": DIGEST}))
    out = subprocess.run([sys.executable, "scripts/sign_images.py", str(record), "--dry-run"], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"cosign sign --yes {DIGEST}"
    assert f"cosign attest --yes --type spdxjson --predicate" in lines[2] and lines[2].endswith(DIGEST)
    assert lines[1].startswith(f"docker buildx imagetools inspect {DIGEST} --format")
    assert len(lines) == 5  # sign, then SBOM + attest for amd64 and arm64
    with pytest.raises(ValueError, match="not a pushed digest"):
        digest_refs({"gateway": "ghcr.io/acme/mlops-gateway:1.2.0"})
    record.write_text(json.dumps({"gateway": "ghcr.io/acme/mlops-gateway:latest"}))
    refused = subprocess.run([sys.executable, "scripts/sign_images.py", str(record)], cwd=REPO, capture_output=True, text=True)
    assert refused.returncode == 1 and "not a pushed digest" in refused.stderr


@pytest.mark.parametrize("image", ["gateway", "drift", "mlflow", "predictor"])
def test_each_image_lock_pins_every_package_with_hashes_at_the_constraints(image):
    constraints = dict(l.strip().split("==", 1) for l in (REPO / "constraints.txt").read_text().splitlines()
                       if "==" in l and not l.startswith("#"))
    norm = {re.sub(r"[-_.]+", "-", k).lower(): v for k, v in constraints.items()}
    lock = (REPO / "charts" / "images" / f"{image}.lock.txt").read_text()
    pins = re.findall(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+) \\", lock, flags=re.M)
    assert pins and all(re.search(rf"^{re.escape(n)}(?:\[[^\]]*\])?=={re.escape(v)} \\\n(    --hash=sha256:[0-9a-f]{{64}}( \\\n)?)+", lock, flags=re.M)
                        for n, v in pins)
    for name, version in pins:
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in norm:
            assert norm[key] == version, f"{image}.lock.txt has {name}=={version}, constraints.txt {norm[key]}"
    wanted = [l.split("[")[0].strip().lower() for l in (REPO / "charts" / "images" / f"{image}.requirements.txt").read_text().splitlines()
              if l.strip() and not l.startswith(("#", "-"))]
    locked = {re.sub(r"[-_.]+", "-", n).lower() for n, _ in pins}
    assert {re.sub(r"[-_.]+", "-", w) for w in wanted} <= locked


def test_the_default_predictor_image_has_no_torch():
    lock = (REPO / "charts" / "images" / "predictor.lock.txt").read_text()
    assert not re.search(r"^(torch|nvidia-)", lock, flags=re.M)
    from mlops_cli.cloud.images import build_plan
    from mlops_cli.config.loading import load_config

    config = load_config()
    assert str(build_plan(config, tag="1", components=["predictor"])[0].dockerfile).endswith("/predictor.Dockerfile")
    torch = config.with_overrides({"serving.runtime": "torch"})
    assert str(build_plan(torch, tag="1", components=["predictor"])[0].dockerfile).endswith("/predictor-torch.Dockerfile")


def test_audit_ignore_entries_expire():
    import datetime as dt

    from scripts.audit_images import audit_command, ignored

    keep, problems = ignored("# c\nPYSEC-2026-1  2999-01-01  not reachable: we never parse X\nGHSA-x  2001-01-01  old\nbad line\n",
                             dt.date(2026, 12, 6))
    assert keep == ["PYSEC-2026-1"] and len(problems) == 2 and "2001-01-01" in problems[0]
    cmd = audit_command(REPO / "charts/images/gateway.lock.txt", keep)
    assert "--require-hashes" in cmd and cmd[-2:] == ["--ignore-vuln", "PYSEC-2026-1"]


def test_dependabot_watches_actions_base_images_and_pip():
    config = yaml.safe_load((REPO / ".github" / "dependabot.yml").read_text())
    assert {u["package-ecosystem"] for u in config["updates"]} == {"github-actions", "docker", "pip"}

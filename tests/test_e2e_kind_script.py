"""scripts/e2e-kind.sh (`make e2e-kind`) with fake docker, kind, kubectl, curl and mlops on PATH.

Proves the script pins the node image, checks the upstream manifests against mlops.lock (`mlops lock`,
before anything is built or created; the lock is kept as an artifact), runs on the `e2e`
resource profile, port-forwards the Envoy proxy with [kubernetes].ingress_address set, and runs the
canary gate twice: a good canary promoted by `--observe --promote-if-healthy`, a deliberately failing
one ([serving].fault_error_share) that must be rolled back (the script fails if it is promoted).

No Docker or kind here: the fakes record every call in one log so the test checks the script's order
and its error handling. They refuse what the real tools refuse (kind cannot load an image docker never
built; a failing mlops step fails the script). `mlops images build` is the real CLI, driving the fake
docker, so the images the script loads are the ones `mlops images build` tags.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys

import pytest

from .support import REPO

SCRIPT = REPO / "scripts" / "e2e-kind.sh"
COREUTILS = ("bash", "mktemp", "seq", "grep", "rm", "sleep", "cat", "dirname", "env", "mkdir", "printf", "cp")

# The fakes are shell scripts (a Python start per call would make this test slow); each logs its argv
# as one tab-separated line.
FAKE = r'''#!{bash}
name={name}
log="$E2E_CALLS"
(IFS=$'\t'; printf '%s\t%s\n' "$name" "$*") >> "$log"
if [ "$name" = mlops ]; then
  printf '%s\t%s\t%s\t%s\t%s\n' "$*" "${{MLOPS_SERVING__FAULT_ERROR_SHARE:-}}" "${{MLOPS_KUBERNETES__INGRESS_ADDRESS:-}}" \
    "${{MLOPS_KUBERNETES__RESOURCE_PROFILE:-}}" "${{MLOPS_CANARY__PROMETHEUS_URL:-}}" >> "$log.env"
fi
fail() {{ echo "$1" >&2; exit "${{2:-1}}"; }}
case "$name" in
  docker)
    if [ -n "${{FAKE_DOCKER_DOWN:-}}" ] && [ "$1" = info ]; then
      fail "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"
    fi ;;
  kind)
    if [ "$1 $2" = "load docker-image" ]; then
      grep -q "^docker"$'\t'"buildx"$'\t'"build"$'\t'".*--tag"$'\t'"$3"$'\t' "$log" || fail "ERROR: image: \"$3\" not present locally"
    fi
    if [ "$1 $2" = "create cluster" ]; then
      while [ $# -gt 0 ]; do [ "$1" = --kubeconfig ] && printf 'apiVersion: v1\nkind: Config\n' > "$2"; shift; done
    fi ;;
  kubectl)
    case " $* " in
      *" port-forward "*) exec sleep 600 ;;
      *" get service -l gateway.envoyproxy.io/owning-gateway-namespace=mlops "*) printf 'envoy-mlops-edge-1a2b3c' ;;
    esac
    [ "$1" = get ] && [ "$2" = namespaces,pods,persistentvolumeclaims ] && printf '%b' "${{FAKE_KUBECTL_GET:-}}" ;;
  mlops)
    if [ -n "${{FAKE_MLOPS_FAIL:-}}" ]; then
      case " $* " in *" $FAKE_MLOPS_FAIL "*) fail "error: deploy failed: InferenceService sentiment not ready in 180 s" ;; esac
    fi
    if [ -n "${{MLOPS_SERVING__FAULT_ERROR_SHARE:-}}" ] && [ -z "${{FAKE_BAD_CANARY_PROMOTED:-}}" ]; then
      case " $* " in *" --promote-if-healthy "*) fail "error: canary of version 2 rolled back: canary errors 31 of 104" ;; esac
    fi
    if [ "$1" = lock ]; then
      [ -z "${{FAKE_LOCK_CHANGED:-}}" ] || fail "error: kserve v0.20.0 changed: its file has sha256 0f0f..., mlops.lock records abab..."
      printf '[manifests.kserve]\nversion = "v0.20.0"\n' > mlops.lock
    fi
    if [ "$1" = images ]; then exec {python} -m mlops_cli "$@"; fi ;;
esac
exit 0
'''


@pytest.fixture
def fakes(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in COREUTILS:
        real = shutil.which(tool)
        assert real, tool
        (bin_dir / tool).symlink_to(real)
    for name in ("docker", "kind", "kubectl", "curl", "mlops"):
        path = bin_dir / name
        path.write_text(FAKE.format(bash=shutil.which("bash"), python=sys.executable, name=name))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    project = tmp_path / "proj"
    project.mkdir()
    (project / "mlops.toml").write_text('[project]\nname = "e2e"\n')
    calls = tmp_path / "calls.jsonl"

    def run(**env: str) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
        full = {"PATH": str(bin_dir), "HOME": str(tmp_path), "TMPDIR": str(tmp_path), "E2E_CALLS": str(calls),
                "MLOPS": "mlops", "NO_COLOR": "1", "E2E_ARTIFACTS": str(tmp_path / "artifacts"), **env}
        result = subprocess.run(["bash", str(SCRIPT)], cwd=project, env=full, capture_output=True, text=True, timeout=120)
        recorded = [l.split("\t") for l in calls.read_text().splitlines()] if calls.exists() else []
        return result, recorded

    return bin_dir, run


def _summary(calls: list[list[str]]) -> list[str]:
    out = []
    for c in calls:
        if c[0] == "docker" and c[1:3] == ["buildx", "build"]:
            out.append(f"docker build {c[c.index('--tag') + 1]}")
        elif c[0] == "kind":
            out.append(" ".join(c[:3] if c[1] != "load" else c[:4]))
        elif c[0] == "mlops":
            out.append(" ".join(c[:3 if c[1] in ("images", "data") else 2]) + (" @k8s" if "kubernetes" in c else ""))
        elif c[0] == "kubectl" and "port-forward" not in c:  # forwards run in the background: order not fixed
            out.append("kubectl get " + c[c.index("get") + 1])
    return out


def test_the_whole_sequence_in_order(fakes, tmp_path):
    _, run = fakes
    result, calls = run()
    assert result.returncode == 0, result.stderr
    images = [f"kind.local/mlops-{c}:e2e" for c in ("gateway", "drift", "predictor", "mlflow")]
    assert _summary(calls) == [
        "mlops lock",
        "mlops images build",
        *(f"docker build {i}" for i in images),
        "kind create cluster",
        *(f"kind load docker-image {i}" for i in images),
        "mlops up @k8s",
        "kubectl get service",
        "mlops data prepare", "mlops train", "mlops register",
        "mlops deploy @k8s", "mlops predict @k8s",
        "mlops train", "mlops register",
        "mlops deploy @k8s", "mlops predict @k8s",
        "mlops deploy @k8s", "mlops predict @k8s",
        "mlops down @k8s",
        "kubectl get namespaces,pods,persistentvolumeclaims", "kind delete cluster",
    ]
    deploys = [c for c in calls if c[:2] == ["mlops", "deploy"]]
    gate = ["--observe", "1m", "--promote-if-healthy"]
    assert [d[4:] for d in deploys] == [["--alias", "champion"], ["--version", "2", "--canary", "50", *gate],
                                        ["--version", "2", "--canary", "50", *gate]]
    down = next(c for c in calls if c[:2] == ["mlops", "down"])
    assert "--purge" in down and "--yes" in down
    create = next(c for c in calls if c[:3] == ["kind", "create", "cluster"])
    image = create[create.index("--image") + 1]
    assert re.fullmatch(r"kindest/node:v1\.3[45]\.\d+@sha256:[0-9a-f]{64}", image)  # a minor KServe v0.20 supports
    envs = [(line.split("\t")[0], line.split("\t")[1:]) for line in (tmp_path / "calls.jsonl.env").read_text().splitlines()]
    for args, (fault, address, profile, prometheus) in envs:
        assert (address, profile, prometheus) == ("127.0.0.1:18443", "e2e", "http://127.0.0.1:19090"), args
    canaries = [(args, env[0]) for args, env in envs if "--canary" in args]
    assert [fault for _, fault in canaries] == ["", "0.3"]  # the good canary, then the deliberately failing one
    forwards = {c[c.index("port-forward") + 1] for c in calls if "port-forward" in c}
    assert forwards == {"svc/mlflow", "svc/prometheus", "service/envoy-mlops-edge-1a2b3c"}
    forward = next(c for c in calls if "service/envoy-mlops-edge-1a2b3c" in c)
    assert forward[1:4] == ["-n", "envoy-gateway-system", "port-forward"] and forward[-1] == "18443:443"


def test_a_promoted_bad_canary_fails_the_run(fakes):
    _, run = fakes
    result, calls = run(FAKE_BAD_CANARY_PROMOTED="1")
    assert result.returncode == 1
    assert "a canary failing 30% of its requests was promoted" in result.stderr
    assert "FAILED at step 'bad canary rolled back'" in result.stderr
    assert calls[-1][:3] == ["kind", "delete", "cluster"]


def test_a_changed_upstream_manifest_stops_the_run_before_any_cluster(fakes, tmp_path):
    _, run = fakes
    result, calls = run(FAKE_LOCK_CHANGED="1")
    assert result.returncode == 1 and "FAILED at step 'lock upstream manifests'" in result.stderr
    assert "kserve v0.20.0 changed" in result.stderr
    assert [c[:2] for c in calls] == [["docker", "info"], ["mlops", "lock"]]  # nothing built, no cluster


def test_the_lock_is_kept_with_the_artifacts_to_review_and_commit(fakes, tmp_path):
    _, run = fakes
    result, _ = run()
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "artifacts" / "mlops.lock").read_text().startswith("[manifests.kserve]")
    assert not (REPO / "scripts" / "e2e-pins.env").exists()  # one source of pins: mlops.lock


def test_a_failed_run_dumps_every_pods_logs_and_the_events(fakes, tmp_path):
    _, run = fakes
    result, calls = run(FAKE_MLOPS_FAIL="--canary 50")
    assert result.returncode == 1 and "pod logs and events in" in result.stderr
    assert any(c[:3] == ["kubectl", "get", "events"] for c in calls)
    assert (tmp_path / "artifacts" / "events.txt").exists()


def test_missing_docker_exits_2_before_anything_runs(fakes):
    bin_dir, run = fakes
    (bin_dir / "docker").unlink()
    result, calls = run()
    assert result.returncode == 2 and "docker is not installed" in result.stderr
    assert calls == []


def test_docker_daemon_down_exits_2(fakes):
    _, run = fakes
    result, calls = run(FAKE_DOCKER_DOWN="1")
    assert result.returncode == 2 and "Docker daemon does not answer" in result.stderr
    assert [c[:2] for c in calls] == [["docker", "info"]]


def test_a_failing_step_is_named_and_the_cluster_still_deleted(fakes):
    _, run = fakes
    result, calls = run(FAKE_MLOPS_FAIL="--canary 50")
    assert result.returncode == 1
    assert "FAILED at step 'canary v2 promoted'" in result.stderr
    assert calls[-1][:3] == ["kind", "delete", "cluster"]
    assert not any(c[:2] == ["mlops", "down"] or c[:2] == ["mlops", "predict"] and "awful side effects" in c for c in calls)


def test_something_left_terminating_fails_the_run(fakes):
    _, run = fakes
    result, calls = run(FAKE_KUBECTL_GET="namespace/knative-serving   Terminating   5m\\n")
    assert result.returncode == 1
    assert "still Terminating" in result.stderr and "knative-serving" in result.stderr
    assert calls[-1][:3] == ["kind", "delete", "cluster"]


def test_keep_leaves_the_cluster_for_debugging(fakes):
    _, run = fakes
    result, calls = run(E2E_KEEP="1", FAKE_MLOPS_FAIL="up --target")
    assert result.returncode == 1 and "keeping cluster mlops-e2e" in result.stderr
    assert not any(c[:2] == ["kind", "delete"] for c in calls)


def test_makefile_target_runs_the_script():
    makefile = (REPO / "Makefile").read_text()
    assert "e2e-kind:" in makefile and "scripts/e2e-kind.sh" in makefile
    assert os.access(SCRIPT, os.X_OK)

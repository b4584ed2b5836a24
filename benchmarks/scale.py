"""Cost as the work grows: `mlops predict --file` and `mlops drift` at three sizes each, printing growth.

predict --file: the real CLI (subprocess) against a real gateway -> onnx-int8 predictor on loopback,
N short reviews from the test split; time, rows/s (vs the runtime's model-only ceiling measured in the
same run: the baseline) and the CLI's peak RSS (polled every 20 ms).
drift: the real CLI over a prediction log of N lines in the window, against a version registered in
an embedded MLflow store; time and peak RSS, beside the same command over an empty log (the fixed
cost, the baseline).

    .venv/bin/python benchmarks/scale.py [--rows 1000,5000,20000] [--lines 10000,100000,500000]
    .venv/bin/python benchmarks/scale.py --rows 1000,100000 --lines 2000000   # acceptance 4's sizes
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from serving import PASSWORD, free_port, minilm_dir, test_split, wait_ready  # noqa: E402

MLOPS = [sys.executable, "-m", "mlops_cli"]


def measure(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float, subprocess.CompletedProcess]:
    """(seconds, peak RSS in MB, result) of a command, RSS polled every 20 ms."""
    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss)
        except psutil.Error:
            break
        time.sleep(0.02)
    out, err = proc.communicate()
    seconds = time.perf_counter() - started
    result = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-2000:]}")
    return seconds, peak / 2**20, result


def growth_table(title: str, unit: str, rows: list[tuple[int, float, float, str]]) -> None:
    print(f"\n{title}")
    print(f"| {unit} | seconds | peak RSS MB | RSS vs smallest | {'' if not rows[0][3] else 'note'} |")
    print("|---|---|---|---|---|")
    base = rows[0][2]
    for n, seconds, rss, note in rows:
        print(f"| {n:,} | {seconds:.1f} | {rss:.0f} | {rss / base - 1:+.1%} | {note} |")


def bench_predict(sizes: list[int], work: Path, env: dict) -> None:
    from models.classifier import SentimentClassifier
    from models.onnx_classifier import OnnxClassifier
    from models.onnx_export import export_int8

    model_dir = work / "classifier"
    SentimentClassifier.from_base(minilm_dir(), ["Negative", "Positive"], max_length=128).save(model_dir)
    onnx_dir = export_int8(model_dir, work / "onnx-int8")
    texts = [e.text for e in test_split(None)]
    clf = OnnxClassifier.load(onnx_dir)
    sample = [texts[i % len(texts)] for i in range(512)]
    clf.predict_proba(sample[:32])
    started = time.perf_counter()
    clf.predict_proba(sample, batch_size=32)
    ceiling = len(sample) / (time.perf_counter() - started)
    del clf

    p_port, g_port = free_port(), free_port()
    procs = [subprocess.Popen(
        [sys.executable, "-m", "models.predictor", "--model-dir", str(onnx_dir), "--http-port", str(p_port),
         "--host", "127.0.0.1", "--runtime", "onnx-int8", "--batch-size", "32", "--latency-budget-ms", "30000"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        wait_ready(f"http://127.0.0.1:{p_port}/v2/health/ready", procs[0])
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "mlops_cli.services.gateway", "--port", str(g_port), "--predictor-url",
             f"http://127.0.0.1:{p_port}", "--model-version", "1"],
            cwd=REPO, env={**env, "MLOPS_LOCAL__GATEWAY_PORT": str(g_port)}, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL))
        wait_ready(f"http://127.0.0.1:{g_port}/readyz", procs[1])
        rows = []
        for n in sizes:
            src = work / f"reviews-{n}.csv"
            with src.open("w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["id", "text"])
                writer.writerows((i, texts[i % len(texts)][:300]) for i in range(n))
            seconds, rss, result = measure([*MLOPS, "--json", "predict", "--file", str(src), "-o", str(work / "out.csv")],
                                           work, {**env, "MLOPS_LOCAL__GATEWAY_PORT": str(g_port)})
            summary = json.loads(result.stdout)
            rows.append((n, seconds, rss, f"{n / seconds:.0f} rows/s end to end ({summary['rows_per_s']:.0f} while "
                                         f"scoring), {n / seconds / ceiling:.0%} of the ceiling"))
            print(f"  predict --file {n:,} rows: {seconds:.1f} s, peak {rss:.0f} MB", flush=True)
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
    growth_table(f"predict --file (onnx-int8 model-only ceiling, texts of at most 300 characters: {ceiling:.0f} texts/s)",
                 "rows", rows)


def registered_project(work: Path) -> Path:
    """A project with version 1 registered (embedded MLflow) and its drift reference attached."""
    import torch

    from mlops_cli.adapters import mlflow_tracking
    from mlops_cli.core.config import load_config
    from mlops_cli.core.dataset import load_drugscom
    from mlops_cli.core.drift_reference import attach_reference
    from models.classifier import SentimentClassifier

    root = work / "drift-project"
    root.mkdir()
    (root / "mlops.toml").write_text('[project]\nname = "scale"\n[registry]\nmodel_name = "scale-model"\n'
                                     '[drift]\nreference_samples = 300\n')
    cfg = load_config(root / "mlops.toml", env={})
    classifier = work / "classifier"
    if not classifier.is_dir():
        torch.manual_seed(0)
        SentimentClassifier.from_base(minilm_dir(), ["Negative", "Positive"], max_length=128).save(classifier)
    client = mlflow_tracking.client(cfg)
    run = client.create_run(mlflow_tracking.experiment_id(cfg), run_name="scale")
    client.set_terminated(run.info.run_id)
    client.create_registered_model("scale-model")
    mv = client.create_model_version("scale-model", source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    from types import SimpleNamespace

    ref = SimpleNamespace(name="scale-model", version=str(mv.version), run_id=run.info.run_id, tags={})
    attach_reference(cfg, ref, classifier, load_drugscom("binary").train)
    return root


def write_log(path: Path, n: int) -> None:
    rng = random.Random(n)
    now = datetime.now(timezone.utc)
    step = timedelta(hours=23) / max(n, 1)
    with path.open("w") as fh:
        chunk = []
        for i in range(n):
            ts = (now - step * (n - i)).isoformat()
            length = rng.randint(20, 2000)
            chunk.append(json.dumps({"ts": ts, "request_id": f"{i:016x}", "model_version": "1",
                                     "label": "Positive" if rng.random() < 0.6 else "Negative",
                                     "confidence": round(rng.uniform(0.5, 1.0), 6), "text_length": length,
                                     "word_count": length // 5, "oov_share": round(rng.uniform(0, 0.2), 6)}) + "\n")
            if len(chunk) == 10_000:
                fh.write("".join(chunk))
                chunk = []
        fh.write("".join(chunk))


def bench_drift(sizes: list[int], work: Path, env: dict) -> None:
    root = registered_project(work)
    rows = []
    for n in [0, *sizes]:
        log = work / f"predictions-{n}.jsonl"
        write_log(log, n)
        seconds, rss, result = measure([*MLOPS, "--json", "drift", "--window", "24h", "--version", "1", "-o",
                                        str(work / "drift.html")], root,
                                       {**env, "MLOPS_GATEWAY__PREDICTION_LOG": str(log)})
        body = json.loads(result.stdout)
        note = f"{body['samples']:,} in window" + (f", sample {body['sample_size']:,}" if body.get("sample_size") else "")
        rows.append((n, seconds, rss, note if n else "empty log: the fixed cost (baseline)"))
        print(f"  drift {n:,} lines: {seconds:.1f} s, peak {rss:.0f} MB", flush=True)
        log.unlink()
    growth_table("mlops drift --window 24h", "lines", rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000,5000,20000", help="predict --file sizes ('' to skip)")
    parser.add_argument("--lines", default="10000,100000,500000", help="drift log sizes ('' to skip)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mlops-scale-"))
    (work / "mlops.toml").write_text(f'[gateway]\nprediction_log = "{work}/predictions.jsonl"\ntimeout_s = 120\n'
                                     '[observability]\nlog_level = "warning"\n')
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MLOPS_GATEWAY_PASSWORD": PASSWORD, "MLOPS_GATEWAY_USER": "bench",
           "MLOPS_CONFIG": str(work / "mlops.toml")}
    print(f"scale benchmark {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    if args.rows:
        bench_predict([int(n) for n in args.rows.split(",")], work, env)
    if args.lines:
        env.pop("MLOPS_CONFIG")
        bench_drift([int(n) for n in args.lines.split(",")], work, env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

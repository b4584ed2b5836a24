"""Cost as the work grows: `mlops predict --file` and `mlops drift` at three sizes each, printing growth.

predict --file: the real CLI (subprocess) against a real gateway -> onnx-int8 predictor on loopback,
N short reviews from the test split; time, rows/s (vs the runtime's model-only ceiling measured in the
same run: the baseline) and the CLI's peak RSS (polled every 20 ms).
drift: the real CLI over a prediction log of N lines in the window, against a version registered in
an embedded MLflow store; time and peak RSS (of the process tree, should it ever start helpers),
beside the same command over an empty log (start-up alone: the baseline) and the issue's measurement
before streaming (428 / 491 / 790 MB at 10k / 100k / 500k lines, ~0.74 KB a line).
Last, each of issue 13's acceptance-4 bars with the measured value and whether it holds.

    .venv/bin/python benchmarks/scale.py                     # acceptance 4's sizes: ~25 min on 2 quiet cores
    .venv/bin/python benchmarks/scale.py --rows 500,2000,8000 --lines 10000,100000,500000   # quicker
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from machine import describe, load_average  # noqa: E402
from serving import PASSWORD, ceiling, free_port, minilm_dir, test_split, wait_ready  # noqa: E402

MLOPS = [sys.executable, "-m", "mlops_cli"]
PREDICT_BAR = 0.10       # predict --file: peak RSS at the largest size within 10% of the smallest
DRIFT_LINES_BAR = 2_000_000
DRIFT_MB_BAR = 1024      # drift over 2 M lines: under 1 GB peak ...
DRIFT_SECONDS_BAR = 60   # ... and under 60 s
BEFORE_MB, BEFORE_KB_PER_LINE = 390, 0.74  # issue 13's fit of drift before streaming: ~390 MB + 0.74 KB a line


def measure(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float, subprocess.CompletedProcess]:
    """(seconds, peak RSS in MB of the process tree, result) of a command: RSS polled every 20 ms, the
    list of its descendants every second (listing them scans /proc: CPU the measured command would lack)."""
    import psutil

    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        # Files, not pipes: a command that writes more than a pipe holds must not stall while we poll.
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err, text=True)
        root, tree, listed, peak = psutil.Process(proc.pid), [], 0.0, 0
        while proc.poll() is None:
            if time.perf_counter() - listed > 1.0:
                try:
                    tree, listed = [root, *root.children(recursive=True)], time.perf_counter()
                except psutil.Error:
                    break
            total = 0
            for member in tree:
                try:
                    total += member.memory_info().rss
                except psutil.Error:
                    pass
            peak = max(peak, total)
            time.sleep(0.02)
        proc.wait()
        out.seek(0)
        err.seek(0)
        out, err = out.read(), err.read()
    seconds = time.perf_counter() - started
    result = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-2000:]}")
    return seconds, peak / 2**20, result


def growth_table(title: str, unit: str, rows: list[tuple[int, float, float, str]]) -> None:
    print(f"\n{title}")
    print(f"| {unit} | seconds | peak RSS MB | RSS vs the smallest size | note |")
    print("|---|---|---|---|---|")
    base = next(rss for n, _, rss, _ in rows if n)  # an empty log is start-up alone, not a size
    for n, seconds, rss, note in rows:
        print(f"| {n:,} | {seconds:.1f} | {rss:.0f} | {rss / base - 1:+.1%} | {note} |")


def verdict_table(bars: list[tuple[str, str, bool | None]]) -> None:
    print("\n| acceptance 4 | measured | holds |")
    print("|---|---|---|")
    for bar, measured, holds in bars:
        print(f"| {bar} | {measured} | {'not measured' if holds is None else 'yes' if holds else 'NO'} |")


def bench_predict(sizes: list[int], work: Path, env: dict) -> list[tuple[str, str, bool | None]]:
    from models.classifier import SentimentClassifier
    from models.onnx_classifier import OnnxClassifier
    from models.onnx_export import export_int8

    model_dir = work / "classifier"
    SentimentClassifier.from_base(minilm_dir(), ["Negative", "Positive"], max_length=128).save(model_dir)
    onnx_dir = export_int8(model_dir, work / "onnx-int8")
    texts = [e.text for e in test_split(None)]
    clf = OnnxClassifier.load(onnx_dir)
    # The same texts as the files, handed over 64 at a time as predict --file sends them ([gateway].max_batch)
    sample = [texts[i % len(texts)][:300] for i in range(512)]
    top = ceiling(clf, sample, 64)
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
                                         f"scoring), {n / seconds / top:.0%} of the ceiling"))
            print(f"  predict --file {n:,} rows: {seconds:.1f} s, peak {rss:.0f} MB", flush=True)
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
    growth_table(f"predict --file (onnx-int8 model-only ceiling, the same texts of at most 300 characters in groups "
                 f"of 64, best of three: {top:.0f} texts/s)", "rows", rows)
    (small, _, small_rss, _), (large, large_s, large_rss, _) = rows[0], rows[-1]
    growth = large_rss / small_rss - 1
    return [(f"predict --file peak RSS at {large:,} rows within {PREDICT_BAR:.0%} of {small:,} rows",
             f"{large_rss:.0f} vs {small_rss:.0f} MB ({growth:+.1%})", growth <= PREDICT_BAR if len(rows) > 1 else None),
            (f"predict --file rows/s at {large:,} rows (report only)",
             f"{large / large_s:.0f} rows/s, {large / large_s / top:.0%} of the model-only ceiling", True)]


def registered_project(work: Path) -> Path:
    """A project with version 1 registered (embedded MLflow) and its drift reference attached."""
    import torch

    from mlops_cli.adapters import mlflow_tracking
    from mlops_cli.config.loading import load_config
    from mlops_cli.data.data_sources import load_drugscom
    from mlops_cli.registry.drift_reference import attach_reference
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


def bench_drift(sizes: list[int], work: Path, env: dict) -> list[tuple[str, str, bool | None]]:
    root = registered_project(work)
    rows = []
    report = work / "drift.html"
    for n in [0, *sizes]:
        log = work / f"predictions-{n}.jsonl"
        write_log(log, n)
        run_env = {**env, "MLOPS_GATEWAY__PREDICTION_LOG": str(log)}
        args = ["--json", "drift", "--window", "24h", "-o", str(report)]
        seconds, rss, result = measure([*MLOPS, *args], root, run_env)
        body = json.loads(result.stdout)
        if n:
            note = (f"{body['samples']:,} in window, {body['compared']:,} compared (sample_size "
                    f"{body['sample_size']:,}); before streaming: ~{BEFORE_MB + n * BEFORE_KB_PER_LINE / 1024:.0f} MB")
        else:
            note = "empty log: start-up alone, stops before MLflow and Evidently"
        rows.append((n, seconds, rss, note))
        print(f"  drift {n:,} lines: {seconds:.1f} s, peak {rss:.0f} MB", flush=True)
        log.unlink()
    growth_table("mlops drift --window 24h (peak RSS of the process tree)", "lines", rows)

    n, seconds, rss, _ = rows[-1]
    at_bar = n >= DRIFT_LINES_BAR
    where = f"{n:,} lines" + ("" if at_bar else f" (the bar is for {DRIFT_LINES_BAR:,})")
    named = "sample_size" in body and "compared" in body and f"[drift].sample_size {body['sample_size']}" in body["message"]
    return [(f"drift over {DRIFT_LINES_BAR:,} lines: peak RSS under {DRIFT_MB_BAR} MB", f"{rss:.0f} MB at {where}",
             rss < DRIFT_MB_BAR if at_bar else None),
            (f"drift over {DRIFT_LINES_BAR:,} lines: under {DRIFT_SECONDS_BAR} s", f"{seconds:.1f} s at {where}",
             seconds < DRIFT_SECONDS_BAR if at_bar else None),
            ("the drift report states its sample size", f"'{body['message'].rpartition('; ')[2].rstrip(')')}'", named)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000,10000,100000", help="predict --file sizes ('' to skip)")
    parser.add_argument("--lines", default="20000,200000,2000000", help="drift log sizes ('' to skip)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mlops-scale-"))
    (work / "mlops.toml").write_text(f'[gateway]\nprediction_log = "{work}/predictions.jsonl"\ntimeout_s = 120\n'
                                     '[observability]\nlog_level = "warning"\n')
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MLOPS_GATEWAY_PASSWORD": PASSWORD, "MLOPS_GATEWAY_USER": "bench",
           "MLOPS_CONFIG": str(work / "mlops.toml")}
    print(f"scale benchmark {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {describe()}", flush=True)
    bars = []
    try:
        if args.rows:
            bars += bench_predict([int(n) for n in args.rows.split(",")], work, env)
        if args.lines:
            env.pop("MLOPS_CONFIG")
            bars += bench_drift([int(n) for n in args.lines.split(",")], work, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    verdict_table(bars)
    print(f"\nended {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {load_average()}")
    return 0 if all(holds is not False for _, _, holds in bars) else 1


if __name__ == "__main__":
    raise SystemExit(main())

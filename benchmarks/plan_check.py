"""`mlops plan` against the local platform: what the plan says for N req/s, beside what N req/s measures.

For each N: `mlops plan --rps N --json` (with `--profile`, if given) names the predictor replicas and the
measured cell it plans from (the replica is planned at 70% of that cell's req/s, its p99 is the plan's
latency); then the deployed path runs as `mlops deploy` starts it (gateway -> onnx-int8 predictor, real
processes on loopback) with the planned replicas (the local target runs one predictor, so an N the plan
gives more than one is reported, not run), and an open-loop client sends N req/s with Poisson arrivals
(a user does not wait for the last answer) for --seconds, after a warm-up. The table puts the plan's p99
beside the measured p50/p99 and the rate actually answered. Prints the machine (CPU, VNNI, load average
at the start and the end): the plan's profile was measured on a quiet machine, so a loaded one misses it.

    .venv/bin/python benchmarks/plan_check.py --onnx-dir DIR [--rps 5,20,60] [--seconds 30] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe  # noqa: E402
from serving import PASSWORD, free_port, pct, test_split, wait_ready  # noqa: E402

WARM_UP_S = 3.0


def planned(rps: float, profile: Path | None) -> dict:
    """`mlops plan`'s JSON: "plan" (for rps) and "profile" (what it was planned from)."""
    command = [sys.executable, "-m", "mlops_cli", "--json", "plan", "--rps", str(rps)]
    if profile:
        command += ["--profile", str(profile)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"mlops plan --rps {rps} failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


async def open_loop(url: str, texts: list[str], rps: float, seconds: float, auth: tuple[str, str]) -> dict:
    """Requests at Poisson arrival times for `seconds` (after WARM_UP_S not counted): latencies of the 200s."""
    import aiohttp

    header = {"Authorization": "Basic " + base64.b64encode(":".join(auth).encode()).decode()}
    rng = random.Random(7)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    async with aiohttp.ClientSession(headers=header, timeout=aiohttp.ClientTimeout(total=60)) as client:
        async def one(text: str, counted: bool) -> None:
            start = time.perf_counter()
            try:
                async with client.post(url, json={"text": text}) as r:
                    await r.read()
                    status = r.status
            except asyncio.TimeoutError:
                status = 0
            if counted:
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    latencies.append(time.perf_counter() - start)

        tasks, begin, at, i = [], time.perf_counter(), 0.0, 0
        while at < WARM_UP_S + seconds:
            await asyncio.sleep(max(0.0, begin + at - time.perf_counter()))
            tasks.append(asyncio.create_task(one(texts[i % len(texts)], at >= WARM_UP_S)))
            i += 1
            at += rng.expovariate(rps)
        await asyncio.gather(*tasks)
    return {"answered_rps": statuses.get(200, 0) / seconds, "p50_ms": pct(latencies, .5), "p99_ms": pct(latencies, .99),
            "statuses": statuses}


def measure(onnx_dir: Path, env: dict, texts: list[str], rates: list[float], seconds: float) -> dict[float, dict]:
    from mlops_cli.config.sections import ServingConfig

    p_port, g_port = free_port(), free_port()
    predictor = subprocess.Popen(
        [sys.executable, "-m", "models.predictor", "--model-dir", str(onnx_dir), "--model-name", "sentiment",
         "--version", "plan", "--http-port", str(p_port), "--host", "127.0.0.1", "--runtime", "onnx-int8",
         "--threads", str(os.cpu_count() or 1), "--batch-size", "32", "--max-wait-ms", "5",
         "--latency-budget-ms", "2000", "--http-nice", str(ServingConfig().http_nice)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gateway = None
    try:
        wait_ready(f"http://127.0.0.1:{p_port}/v2/health/ready", predictor)
        gateway = subprocess.Popen(
            [sys.executable, "-m", "mlops_cli.services.gateway", "--port", str(g_port), "--predictor-url",
             f"http://127.0.0.1:{p_port}", "--model-version", "plan"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_ready(f"http://127.0.0.1:{g_port}/readyz", gateway)
        url = f"http://127.0.0.1:{g_port}/predict"
        return {rps: asyncio.run(open_loop(url, texts, rps, seconds, ("bench", PASSWORD))) for rps in rates}
    finally:
        for proc in (gateway, predictor):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx-dir", type=Path, required=True, help="an onnx-int8 export (what `mlops register` stores)")
    parser.add_argument("--project", type=Path, default=None, help="project whose test split to send (default: packaged)")
    parser.add_argument("--rps", default="5,20,60", help="request rates to plan and measure")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--profile", type=Path, default=None, help="the serving profile `mlops plan` reads (default: shipped)")
    args = parser.parse_args()
    rates = [float(r) for r in args.rps.split(",")]

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"plan check {started}: {describe()}", flush=True)
    answers = {rps: planned(rps, args.profile) for rps in rates}
    plans = {rps: answer["plan"] for rps, answer in answers.items()}
    runnable = [rps for rps in rates if plans[rps]["predictors"] == 1]
    examples = test_split(args.project)
    texts = [e.text for e in examples]
    work = Path(tempfile.mkdtemp(prefix="mlops-plan-check-"))
    (work / "mlops.toml").write_text(f'[gateway]\nprediction_log = "{work}/predictions.jsonl"\ntimeout_s = 120\n'
                                     f'max_words = 400\n[observability]\nlog_level = "warning"\n')
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MLOPS_GATEWAY_PASSWORD": PASSWORD, "MLOPS_GATEWAY_USER": "bench",
           "MLOPS_CONFIG": str(work / "mlops.toml")}
    measured = measure(args.onnx_dir, env, texts, runnable, args.seconds) if runnable else {}

    print(f"\n| req/s asked | plan: predictors | plan: replica capacity req/s | plan: p99 ms | measured: answered req/s "
          f"| measured p50 ms | measured p99 ms | non-200 | p99 within plan |")
    print("|---|---|---|---|---|---|---|---|---|")
    for rps in rates:
        plan = plans[rps]
        row = f"| {rps:g} | {plan['predictors']} | {plan['replica_rps']:.1f} | {plan['cell']['p99_ms']:.0f} |"
        if rps not in measured:
            print(row + " not run: the local target runs one predictor | | | | |")
            continue
        m = measured[rps]
        other = sum(n for s, n in m["statuses"].items() if s != 200)
        print(row + f" {m['answered_rps']:.1f} | {m['p50_ms']:.0f} | {m['p99_ms']:.0f} | {other} | "
              f"{'yes' if m['p99_ms'] <= plan['cell']['p99_ms'] else 'NO'} |")
    print(f"\n  finished {time.strftime('%H:%M UTC', time.gmtime())}, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; profile: {args.profile or 'shipped'} "
          f"(measured {answers[rates[0]]['profile']['measured_at']} on {answers[rates[0]]['profile']['machine']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

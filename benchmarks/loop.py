"""The closed loop on a real shift, on this machine: a champion trained on drugsCom reviews meets tweets.

What runs, all through `mlops` on the local target (real processes on loopback): `up`, `data prepare`
(drugsCom only), `train --log`, `register --alias champion`, `deploy`; then the first part of Hutto's tweets
goes through the gateway's /predict with each true label sent to /feedback; `mlops monitor` gives live
accuracy; `mlops loop --once` (timed) decides on triggers, retrains with the feedback, gates, registers the
challenger, and runs its canary (the gateway sends [loop].canary_percent of the requests to it; the judge
reads both predictors' request counters in the local Prometheus, `up --with-prometheus`) and promotes it
or rolls it back. The next part of the tweets then goes through the gateway: its live accuracy, per
version that answered, is the "after".

    .venv/bin/python benchmarks/loop.py                       # the packaged MiniLM; several minutes on 2 cores
    .venv/bin/python benchmarks/loop.py --steps 40 --stream 200 --base-model DIR

Prints the numbers as JSON at the end too (`--json-out FILE` writes them).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from machine import describe  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mlops(root: Path, *args: str, check: bool = True, timeout: float = 3600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_"))}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", NO_COLOR="1")
    result = subprocess.run([sys.executable, "-m", "mlops_cli", *args], cwd=root, env=env, capture_output=True,
                            text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise SystemExit(f"mlops {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def stream(gateway: str, auth: tuple[str, str], examples) -> None:
    with httpx.Client(base_url=gateway, auth=auth, timeout=60) as client:
        for e in examples:
            answer = client.post("/predict", json={"text": e.text})
            answer.raise_for_status()
            client.post("/feedback", json={"request_id": answer.headers["x-request-id"],
                                           "label": e.label}).raise_for_status()


def described(step: dict) -> str:
    """A step's decision with the evidence a reader of the table needs (the record has all of it)."""
    decision = step["decision"]
    if step["step"] == "gate" and "fresh" in step:
        fresh, test = step["fresh"], step["test"]
        decision += (f" ({step['metric']}, challenger - champion: fresh slice of {fresh['n']} labels "
                     f"{fresh['estimate']:+.3f} [{fresh['low']:+.3f}, {fresh['high']:+.3f}], original test split "
                     f"of {test['n']} rows {test['difference']:+.3f})")
    elif step["step"] == "canary" and "canary_requests" in step:
        decision += (f" ({step['canary_requests']} canary requests, {step['canary_errors']} errors; baseline "
                     f"{step['baseline_requests']}; the judge needed {step['required_requests']})")
    return decision


def live(root: Path, version: str) -> dict:
    found = json.loads(mlops(root, "monitor", "--no-drift", "--json").stdout)["live_quality"]["versions"]
    return next(v for v in found if v["model_version"] == version)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-model", default="", help="[train].base_model (default: the packaged MiniLM)")
    parser.add_argument("--rows", type=int, default=2000, help="[data].max_rows_per_source")
    parser.add_argument("--steps", type=int, default=120, help="[train].max_steps (champion and challenger)")
    parser.add_argument("--stream", type=int, default=300, help="tweets labelled before the loop")
    parser.add_argument("--next", type=int, default=300, help="tweets streamed after it")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    from mlops_cli.data.data_sources import load

    tweets = load("tweets", "binary")["all"]
    root = Path(tempfile.mkdtemp(prefix="mlops-loop-bench-"))
    ports = {name: free_port() for name in ("mlflow", "gateway", "predictor", "drift", "prometheus")}
    base = f'base_model = "{args.base_model}"\n' if args.base_model else ""
    (root / "mlops.toml").write_text(
        '[project]\nname = "loop-benchmark"\n'
        f'[data]\nsources = ["drugscom"]\nmax_rows_per_source = {args.rows}\n'
        f'[train]\n{base}max_length = 64\nmax_steps = {args.steps}\n'
        '[registry]\nmin_f1 = 0.0\n[gateway]\nlog_text = true\n[drift]\ninterval = "1h"\n'
        '[feedback]\nmin_labels = 30\naccuracy_floor = 0.8\n'
        f'[loop]\nmin_labels = {min(100, args.stream)}\nfresh_share = 0.3\ncanary_percent = 50\nobserve = "1m"\n'
        '[canary]\ninterval_s = 5\nprobe_rps = 10\nmax_window_s = 600\n'
        '[local]\n' + "".join(f"{k}_port = {v}\n" for k, v in ports.items()))
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    timings: dict[str, float] = {}
    try:
        for step in (("up", "--with-prometheus"), ("data", "prepare"), ("train", "--log"), ("register", "--alias", "champion"),
                     ("deploy", "--version", "1")):
            started = time.perf_counter()
            mlops(root, *step)
            timings[" ".join(step)] = round(time.perf_counter() - started, 1)
        auth = ("admin", (root / ".mlops" / "secrets" / "gateway-password").read_text().strip())
        stream(gateway, auth, tweets[:args.stream])
        before = live(root, "1")

        started = time.perf_counter()
        loop = mlops(root, "loop", "--once", "--json", check=False)
        timings["loop --once"] = round(time.perf_counter() - started, 1)
        try:
            record = json.loads(loop.stdout)
        except ValueError:  # the pass failed: its record is written anyway (loop/cycle.py), with the error
            record = json.loads((root / ".mlops" / "loop" / "latest.json").read_text())
            timings[f"loop --once exit {loop.returncode}"] = timings.pop("loop --once")
        decisions = [(s["step"], described(s)) for s in record.get("steps", [])]
        after = None
        challenger = record.get("challenger_version")
        if record.get("promoted"):
            stream(gateway, auth, tweets[args.stream:args.stream + args.next])
            after = live(root, challenger)
    finally:
        mlops(root, "down", check=False, timeout=300)

    result = {"machine": describe(), "timings_s": timings,
              "live_before": before, "loop_outcome": record.get("outcome"), "decisions": decisions,
              "live_after": after, "project": str(root)}
    print(f"{result['machine']}")
    for name, seconds in timings.items():
        print(f"  {name:<48} {seconds:>7.1f} s")
    print(f"live accuracy before (version 1, {before['labels']} tweets): {before['accuracy']:.3f} "
          f"[{before['accuracy_interval'][0]:.3f}, {before['accuracy_interval'][1]:.3f}]")
    for step, decision in decisions:
        print(f"  {step:<9} {decision[:220]}")
    print(f"loop outcome: {record.get('outcome')}")
    if after is None:
        print("no promotion: nothing new serves, so there is no 'after'")
    else:
        print(f"live accuracy after (version {challenger}, next {after['labels']} tweets): {after['accuracy']:.3f} "
              f"[{after['accuracy_interval'][0]:.3f}, {after['accuracy_interval'][1]:.3f}]")
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

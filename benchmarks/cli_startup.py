"""How fast `mlops --help` starts, next to the floor: `python -c "import typer"`.

Prints a table with the median wall time of each over repeated runs and their ratio (goal: <= 2).

    .venv/bin/python benchmarks/cli_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402


def median_wall(cmd: list[str], runs: int) -> float:
    env = {**os.environ, "NO_COLOR": "1"}
    subprocess.run(cmd, capture_output=True, env=env, check=True)  # warm the page cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, env=env, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    bin_dir = Path(sys.executable).parent
    mlops = shutil.which("mlops", path=str(bin_dir)) or shutil.which("mlops")
    if mlops is None:
        print("mlops is not installed in this environment (make setup)", file=sys.stderr)
        return 2
    baseline = median_wall([sys.executable, "-c", "import typer"], args.runs)
    ours = median_wall([mlops, "--help"], args.runs)
    ratio = ours / baseline
    rows = [
        ("python -c 'import typer' (baseline)", baseline, 1.0),
        ("mlops --help", ours, ratio),
    ]
    print(f"machine: {describe()}")
    print(f"{'command':<40} {'median ms':>10} {'ratio':>7}")
    for name, seconds, r in rows:
        print(f"{name:<40} {seconds * 1000:>10.1f} {r:>7.2f}")
    print(f"\ngoal: ratio <= 2.00 -> {'met' if ratio <= 2 else 'NOT met'} ({args.runs} runs each)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

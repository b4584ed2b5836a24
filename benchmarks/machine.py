"""The machine a benchmark ran on, in one line: CPU model, CPU count, VNNI or not, load average.

int8 speed and int8 rounding both depend on the CPU's instructions: onnxruntime's int8 MatMul uses
AVX-512 VNNI or AVX-VNNI where the CPU has them and AVX2 otherwise, so every table says which.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def vnni_line() -> str:
    flags = cpu_flags()
    found = sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    if found:
        return f"VNNI: yes ({', '.join(found)})"
    best = next((f for f in ("avx512f", "avx2", "avx") if f in flags), "no AVX")
    return f"VNNI: no ({best} only)" if flags else "VNNI: unknown (no /proc/cpuinfo)"


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def describe() -> str:
    """e.g. 'AMD EPYC, 2 CPUs, VNNI: no (avx2 only), load average 1.2 0.9 0.8'"""
    return f"{cpu_model()}, {os.cpu_count()} CPUs, {vnni_line()}, load average {load_average()}"

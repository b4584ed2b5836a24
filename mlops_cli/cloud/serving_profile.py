"""What one predictor measurably serves: the profile `benchmarks/serving.py` writes and `mlops plan` reads.

A profile is the served runtime's measured cells through the real gateway -> predictor path (concurrency,
requests/s, p50, p99), the CPUs the predictor ran on, the gateway's CPU per request, the model's size and
the machine (CPU model, VNNI, load). A default profile ships beside this module, with its date and machine.

    profile = load_profile()                  # the shipped default
    profile = load_profile(Path("my.json"))   # one measured on your own hardware
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..common.errors import ConfigError

DEFAULT_PROFILE = "serving_profile.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Cell:
    """One load level as measured: `concurrency` clients, each sending its next request when answered."""

    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class ServingProfile:
    measured_at: str
    machine: str            # e.g. "AMD EPYC, 2 CPUs, no VNNI (AVX2), load average 1.1"
    runtime: str
    predictor_cpus: int     # the CPUs the measured predictor had (its model threads)
    cells: tuple[Cell, ...]
    gateway_cpu_ms: float   # the gateway process's CPU per request, measured in the same run
    model_mb: float         # the served runtime directory, what a new replica fetches
    cold_start_s: float     # predictor process start to ready, model on disk
    source: str             # the command that measured it

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, **asdict(self), "cells": [asdict(c) for c in self.cells]}


def profile_from_dict(data: Any, where: str) -> ServingProfile:
    """Validated: every number positive, at least one cell. `where` names the file in the message."""
    try:
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format_version {data.get('format_version')!r} is not {FORMAT_VERSION}")
        cells = tuple(Cell(int(c["concurrency"]), float(c["rps"]), float(c["p50_ms"]), float(c["p99_ms"]))
                      for c in data["cells"])
        profile = ServingProfile(
            measured_at=str(data["measured_at"]), machine=str(data["machine"]), runtime=str(data["runtime"]),
            predictor_cpus=int(data["predictor_cpus"]), cells=cells, gateway_cpu_ms=float(data["gateway_cpu_ms"]),
            model_mb=float(data["model_mb"]), cold_start_s=float(data["cold_start_s"]), source=str(data["source"]))
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        missing = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ConfigError(f"serving profile {where} is not one benchmarks/serving.py writes: {missing}",
                          hint="write one with benchmarks/serving.py --profile-out FILE, or leave --profile out") from exc
    numbers = [profile.predictor_cpus, profile.gateway_cpu_ms, *(v for c in cells for v in (c.concurrency, c.rps, c.p99_ms))]
    if not cells or any(v <= 0 for v in numbers):
        raise ConfigError(f"serving profile {where}: needs at least one cell and positive numbers throughout",
                          hint="measure it again with benchmarks/serving.py --profile-out FILE")
    return profile


def load_profile(path: Path | None = None) -> ServingProfile:
    if path is None:
        text, where = resources.files(__package__).joinpath(DEFAULT_PROFILE).read_text(), f"(shipped {DEFAULT_PROFILE})"
    else:
        where = str(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read serving profile {path}: {exc.strerror or exc}",
                              hint="pass a file benchmarks/serving.py --profile-out wrote") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"serving profile {where} is not JSON: line {exc.lineno}: {exc.msg}") from exc
    return profile_from_dict(data, where)

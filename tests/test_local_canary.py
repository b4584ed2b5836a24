"""A canary on the local target, on real processes (issue 25): `mlops deploy --version N --canary P` starts
the new version's predictor beside the serving one and the gateway sends it P% of the requests; the split
survives a killed gateway; the canary judge reads both predictors' request counters in the local Prometheus
(`up --with-prometheus`, each predictor labelled with its program name as `revision`) and promotes a
healthy canary or rolls back a failing one ([serving].fault_error_share: a version answering 500); promote
and rollback are idempotent, and what a user gets wrong is one clear message.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time

import httpx
import pytest

from .support import free_port, local_platform

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus")]


def _versions(platform, n: int) -> list[str]:
    with httpx.Client(base_url=platform.gateway, auth=platform.auth, timeout=30) as client:
        return [client.post("/predict", json={"text": f"review number {i}"}).json()["model_version"] for i in range(n)]


def _within_binomial_bound(hits: int, n: int, p: float, z: float = 4.5) -> bool:
    return abs(hits - n * p) <= z * math.sqrt(n * p * (1 - p))


def _upstream(platform) -> dict:
    return httpx.get(f"{platform.gateway}/admin/upstream", auth=platform.admin_auth, timeout=10).json()


def _predictors(platform) -> dict[str, dict]:
    return {name: c for name, c in platform.status().items() if name.startswith("predictor")}


def test_a_canary_splits_survives_a_restart_is_judged_promoted_and_rolled_back(tmp_path_factory, tiny_base_model):
    canary = {"interval_s": 3.0, "probe_rps": 20.0, "max_window_s": 240.0, "max_error_rate": 0.05,
              "bad_error_rate": 0.3, "max_p99_s": 5.0}   # 28 canary requests decide; latency is not judged here
    with local_platform(tmp_path_factory.mktemp("canary"), tiny_base_model, "canary", canary=canary,
                        local={"prometheus_port": free_port()}) as platform:
        platform.ok("up", "--with-prometheus")
        platform.ok("data", "prepare")
        for seed in ("1", "2"):
            platform.ok("train", "--log", "--max-steps", "2", "--seed", seed)
            platform.ok("register")

        nothing = platform.mlops("deploy", "--version", "2", "--canary", "30")
        assert nothing.returncode == 2 and "a canary needs a version already serving" in nothing.stderr
        assert "Traceback" not in nothing.stderr and not _predictors(platform)
        bad = platform.mlops("deploy", "--version", "2", "--canary", "0")
        assert bad.returncode == 2 and "--canary" in bad.stderr and "Traceback" not in bad.stderr

        platform.ok("deploy", "--version", "1")
        split = json.loads(platform.ok("deploy", "--version", "2", "--canary", "30", "--json").stdout)
        assert split["traffic"] == "30% version 2, 70% version 1"
        assert platform.status()["gateway"]["traffic"] == {"1": 70, "2": 30}
        n = 300
        answered = _versions(platform, n)
        assert _within_binomial_bound(answered.count("2"), n, 0.3), answered.count("2")
        assert set(answered) == {"1", "2"}

        refused = platform.mlops("deploy", "--version", "1")
        assert refused.returncode == 2 and "a canary of version 2 is running" in refused.stderr

        # The split lives in the upstream file: a gateway killed with -9 (restarted by the healer) keeps it.
        old_pid = platform.status()["gateway"]["pid"]
        os.kill(old_pid, signal.SIGKILL)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            gateway = platform.status()["gateway"]
            if gateway["pid"] not in (None, old_pid) and gateway["healthy"]:
                break
            time.sleep(1)
        assert _upstream(platform)["canary"]["percent"] == 30 and _upstream(platform)["model_version"] == "1"

        platform.ok("deploy", "--version", "2", "--canary", "60")      # the same canary, re-weighed
        assert _upstream(platform)["canary"]["percent"] == 60

        # Judged on the two predictors' own counters in the local Prometheus: healthy, so promoted.
        judged = platform.mlops("deploy", "--version", "2", "--canary", "60", "--observe", "20s",
                                "--promote-if-healthy", "--json", timeout=400)
        assert judged.returncode == 0, judged.stderr
        verdict = json.loads(judged.stdout)["canary"]
        assert verdict["action"] == "promoted" and verdict["canary_requests"] >= verdict["required_requests"] == 28
        assert verdict["baseline_requests"] > 0          # version 1's own counter, apart from version 2's
        assert _upstream(platform) == {**_upstream(platform), "model_version": "2", "canary": None}
        assert list(_predictors(platform)) == ["predictor-v2"]            # the old version's predictor stopped
        again = json.loads(platform.ok("deploy", "--promote", "--json").stdout)
        assert "already promoted" in again["message"]
        assert set(_versions(platform, 20)) == {"2"}

        # A failing canary: version 1 again, every predict call answered 500; the judge rolls it back.
        toml = platform.root / "mlops.toml"
        toml.write_text(toml.read_text() + "[serving]\nfault_error_share = 1.0\n")
        failing = platform.mlops("deploy", "--version", "1", "--canary", "50", "--observe", "20s",
                                 "--promote-if-healthy", timeout=400)
        assert failing.returncode == 1, failing.stderr
        assert "rolled back" in failing.stderr and "Traceback" not in failing.stderr
        assert _upstream(platform)["canary"] is None and _upstream(platform)["model_version"] == "2"
        assert list(_predictors(platform)) == ["predictor-v2"]
        twice = json.loads(platform.ok("deploy", "--rollback", "--json").stdout)
        assert "already rolled back" in twice["message"] and _upstream(platform)["model_version"] == "2"
        assert set(_versions(platform, 20)) == {"2"}
        nothing_to_promote = platform.mlops("deploy", "--promote")
        assert nothing_to_promote.returncode == 1 and "there is no canary to promote" in nothing_to_promote.stderr

"""The closed loop on the real local platform (issue 25's acceptance): a champion trained on drugsCom only,
tweets streamed through /predict with their labels through /feedback, live accuracy with its interval in
`mlops monitor`; `mlops loop --once` detects the drop and retrains, the gate passes, the canary (the gateway's
split, judged on the predictors' counters in the local Prometheus) is promoted, and live accuracy on the next
part of the stream rises. What must never move without a promotion (the serving version, the champion
alias) stays put when the loop is killed with -9 mid-retrain, when a canary fails (a challenger whose
predictor answers 500: rolled back by the loop), and when the gate refuses a challenger trained on a bulk
import with every label flipped (no version registered, the data version back to the champion's).
"""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import pytest

from .support import free_port, local_platform

pytestmark = pytest.mark.slow


def _stream(platform, examples) -> int:
    """Each text through /predict, then its true label through /feedback; returns how many were right."""
    right = 0
    with httpx.Client(base_url=platform.gateway, auth=platform.auth, timeout=30) as client:
        for e in examples:
            answer = client.post("/predict", json={"text": e.text})
            assert answer.status_code == 200, answer.text
            right += answer.json()["label"] == e.label
            stored = client.post("/feedback", json={"request_id": answer.headers["x-request-id"], "label": e.label})
            assert stored.status_code == 200, stored.text
    return right


def _serving(platform) -> str:
    return httpx.get(f"{platform.gateway}/admin/upstream", auth=platform.admin_auth, timeout=10).json()["model_version"]


def _champion(platform) -> str:
    listed = json.loads(platform.ok("models", "list", "--json").stdout)
    versions = listed["versions"] if isinstance(listed, dict) else listed
    return next(str(v["version"]) for v in versions if "champion" in v.get("aliases", []))


def _live(platform, version: str) -> dict:
    found = json.loads(platform.ok("monitor", "--no-drift", "--json").stdout)["live_quality"]["versions"]
    return next(v for v in found if v["model_version"] == version)


# The tiny random-init BERT learns next to nothing at the packaged MiniLM's fine-tuning rates (1e-4): its
# challenger gained nothing the gate could see (-0.004 [-0.109, +0.098] on 96 fresh labels). At these rates, with
# no early stop, it learns the sentiment words of what it is given, so the gate passes on its evidence.
# That model stays near chance on drugsCom (argmax macro F1 0.41-0.55), so on the drugsCom test split two of
# them differ by noise; on 300 rows a source (116 test rows) the challenger lost 0.027 there, which the loop's
# max_test_drop could allow but the registry's champion rule (no lower macro F1) refused after the canary had
# promoted it. On 600 rows (231 test rows) these seeds give the challenger +0.019 there.
RECIPE = {"max_steps": 300, "epochs": 5, "learning_rate": 3e-3, "head_learning_rate": 1e-2, "early_stopping_patience": 0}
# The canary's judge needs 28 of its requests (max_error_rate 0.05 vs bad_error_rate 0.3, 5% each way:
# monitoring/canary_statistics.py); the probe sends them while the feedback stream is over.
SEEN = 240   # tweets labelled before the loop: 96 of them (fresh_share 0.4) are the gate's fresh slice
CANARY = {"interval_s": 3.0, "probe_rps": 20.0, "max_window_s": 240.0, "max_error_rate": 0.05, "bad_error_rate": 0.3,
          "max_p99_s": 5.0}   # a shared 2-core machine: latency is not what these tests judge


def test_feedback_live_accuracy_and_a_loop_pass_on_the_local_platform(tmp_path_factory, tiny_base_model):
    from mlops_cli.data.data_sources import load

    with local_platform(tmp_path_factory.mktemp("loop-platform"), tiny_base_model, "loop-e2e",
                        data={"max_rows_per_source": 600}, train=RECIPE,
                        gateway={"log_text": True}, feedback={"min_labels": 30, "accuracy_floor": 0.9},
                        loop={"min_labels": 60, "fresh_share": 0.4, "canary_percent": 50, "observe": "15s"},
                        canary=CANARY, local={"prometheus_port": free_port()}) as platform:
        platform.ok("up", "--with-prometheus")
        platform.ok("data", "prepare")                    # drugsCom only: the champion has never seen a tweet
        platform.ok("train", "--log")
        platform.ok("register", "--alias", "champion")
        platform.ok("deploy", "--version", "1")
        tweets = load("tweets", "binary")["all"]
        right = _stream(platform, tweets[:SEEN])

        monitor = json.loads(platform.ok("monitor", "--no-drift", "--json").stdout)["live_quality"]
        [live] = monitor["versions"]
        assert (live["model_version"], live["labels"], live["accuracy"]) == ("1", SEEN, round(right / SEEN, 4))
        low, high = live["accuracy_interval"]
        assert low <= live["accuracy"] <= high < 0.9 and live["below_floor"]

        dry = json.loads(platform.ok("loop", "--once", "--dry-run", "--json").stdout)
        # Both triggers see the shift: tweets are short and unlike drug reviews, and the champion gets them wrong.
        assert dry["steps"][0]["fired"] == ["dataset drift", "live accuracy of version(s) 1 under 0.9"]
        assert dry["outcome"].startswith(f"would retrain on {SEEN} labels")

        # kill -9 in the middle of the retrain: serving and the champion stay, the lock does not outlive it.
        loop = platform.popen("loop", "--once")
        fresh = platform.root / "data" / "reviews" / "fresh.csv"   # the new data version is written: training next
        deadline = time.monotonic() + 300
        while not fresh.exists() and time.monotonic() < deadline:
            assert loop.poll() is None, loop.stderr.read()
            time.sleep(0.1)
        time.sleep(1.0)
        os.killpg(loop.pid, signal.SIGKILL)
        loop.wait(30)
        assert (_serving(platform), _champion(platform)) == ("1", "1")

        result = platform.mlops("loop", "--once", "--json", timeout=900)   # starts clean after the crash
        assert result.returncode == 0, result.stderr
        record = json.loads(result.stdout)
        steps = {s["step"]: s for s in record["steps"]}
        assert steps["retrain"]["data"]["feedback_labels"] == SEEN
        gate = steps["gate"]
        assert gate["passed"], gate
        assert 0 < gate["fresh"]["low"] <= gate["fresh"]["estimate"] <= gate["fresh"]["high"]
        canary = steps["canary"]
        assert canary["action"] == "promoted", canary     # judged on version 2's own requests in Prometheus
        assert canary["canary_requests"] >= canary["required_requests"] == 28 and canary["baseline_requests"] > 0
        assert record["promoted"] and record["challenger_version"] == "2"
        assert (_serving(platform), _champion(platform)) == ("2", "2")
        assert platform.status()["gateway"]["traffic"] == {"2": 100}

        # The next part of the stream, answered by the promoted version: live accuracy rises.
        right_after = _stream(platform, tweets[SEEN:SEEN + 120])
        after = _live(platform, "2")
        assert (after["labels"], after["accuracy"]) == (120, round(right_after / 120, 4))
        assert after["accuracy_interval"][0] <= after["accuracy"] <= after["accuracy_interval"][1]
        # Not a lucky draw: the promoted version's whole interval lies above the champion's live accuracy.
        assert after["accuracy_interval"][0] > live["accuracy"], (live, after)


# The loop with its retrain replaced (the gate passed for the newest run, already trained), so that every run
# reaches the canary; the rest is real: register, the gateway's split, the judge on Prometheus, the rollback.
FAILING_CANARY_PASS = r"""
import json, sys
from mlops_cli.config.loading import load_config
from mlops_cli.loop.cycle import Steps, run_once
from mlops_cli.loop.retrain import Retrained
from mlops_cli.targets import get_target

config = load_config()
fired = {"retrain": True, "decision": "retrain: stand-in trigger", "evidence": {"labels": 0}}
steps = Steps(triggers=lambda config, last: fired,
              retrain=lambda config, reporter: Retrained("1", None, {"md5": "stand-in"}, {}, {},
                                                         {"passed": True, "reasons": []}))
print(json.dumps(run_once(config, get_target(config, "local"), steps=steps), default=str))
"""


def test_a_failing_canary_is_rolled_back_by_the_loop_and_nothing_moves(tmp_path_factory, tiny_base_model):
    import subprocess
    import sys

    with local_platform(tmp_path_factory.mktemp("loop-canary"), tiny_base_model, "loop-canary",
                        loop={"canary_percent": 50, "observe": "15s"}, canary=CANARY,
                        local={"prometheus_port": free_port()}) as platform:
        platform.ok("up", "--with-prometheus")
        platform.ok("data", "prepare")
        platform.ok("train", "--log", "--max-steps", "2")
        platform.ok("register", "--alias", "champion")
        platform.ok("deploy", "--version", "1")
        platform.ok("train", "--log", "--max-steps", "2", "--seed", "7")   # the challenger's run
        toml = platform.root / "mlops.toml"
        toml.write_text(toml.read_text() + "[serving]\nfault_error_share = 1.0\n")   # its predictor answers 500

        result = subprocess.run([sys.executable, "-c", FAILING_CANARY_PASS], cwd=platform.root, env=platform.env,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        record = json.loads(result.stdout.strip().splitlines()[-1])
        steps = {s["step"]: s for s in record["steps"]}
        assert steps["register"]["version"] == "2"
        assert steps["canary"]["action"] == "rolled back", steps["canary"]
        assert "error rate" in steps["canary"]["decision"] or "errors" in steps["canary"]["decision"], steps["canary"]
        assert not record["promoted"] and "promote" not in steps
        assert (_serving(platform), _champion(platform)) == ("1", "1")
        upstream = httpx.get(f"{platform.gateway}/admin/upstream", auth=platform.admin_auth, timeout=10).json()
        assert upstream["canary"] is None
        assert [n for n in platform.status() if n.startswith("predictor")] == ["predictor-v1"]
        assert platform.predict("a fine film").json()["model_version"] == "1"


# Corrupted labels that agree with each other: every label of a bulk import flipped (a label map applied the
# wrong way round). The fresh slice is cut from the same labels, so there the challenger beats the champion,
# which answers the truth; only the gate's second rule, the original test split, can see it. So the champion
# here is one that the test split can judge: trained on tweets, which the tiny model learns (0.69 live accuracy
# after one retrain above), not on drugsCom, where it stays near chance.
FLIP = {"Positive": "Negative", "Negative": "Positive"}


def test_a_challenger_trained_on_flipped_labels_is_refused_by_the_gate_and_nothing_changes(tmp_path_factory,
                                                                                           tiny_base_model):
    import csv

    from mlops_cli.common.text_policy import clean_text
    from mlops_cli.data.data_sources import load

    with local_platform(tmp_path_factory.mktemp("loop-flipped"), tiny_base_model, "loop-flipped",
                        data={"sources": ["tweets"], "max_rows_per_source": 600}, train=RECIPE,
                        # no trigger but the labels: a bulk import is not live traffic, so neither drift nor
                        # live accuracy would fire on it
                        loop={"min_labels": 60, "fresh_share": 0.4, "on_drift": False, "on_accuracy_floor": False},
                        ) as platform:
        platform.ok("up")
        platform.ok("data", "prepare")
        platform.ok("train", "--log")
        platform.ok("register", "--alias", "champion")
        platform.ok("deploy", "--version", "1")
        data_before = json.loads(platform.ok("data", "status", "--json").stdout)
        models_before = json.loads(platform.ok("models", "list", "--json").stdout)

        dataset = platform.root / "data" / "reviews"
        known = {r["text"] for split in ("train", "test") for r in csv.DictReader((dataset / f"{split}.csv").open())}
        unseen = [e for e in load("tweets", "binary")["all"] if clean_text(e.text) not in known][:600]
        flipped = platform.root / "vendor-labels.csv"
        with flipped.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            writer.writerows((e.text, FLIP[e.label]) for e in unseen)
        platform.ok("feedback", "import", str(flipped))

        result = platform.mlops("loop", "--once", "--json", timeout=900)
        assert result.returncode == 0, result.stderr
        record = json.loads(result.stdout)
        steps = {s["step"]: s for s in record["steps"]}
        assert steps["retrain"]["data"]["feedback_labels"] == len(unseen)
        gate = steps["gate"]
        assert not gate["passed"], gate
        # Refused for what the flip did to the truth: the test split, by far more than the allowed drop (the
        # tiny model's retrains differ there by a few hundredths: see RECIPE). Measured: fresh slice +0.185
        # [+0.117, +0.253] for the challenger on the flipped labels, test split -0.436 (0.277 against 0.713).
        assert gate["test"]["difference"] < -0.1 < -gate["test"]["max_drop"], gate
        assert any("original test split" in reason for reason in gate["reasons"]), gate
        assert record["outcome"].startswith("gate refused") and "register" not in steps and not record["promoted"]

        # Nothing changed: no version, serving and champion as they were, the data version the champion's.
        assert json.loads(platform.ok("models", "list", "--json").stdout) == models_before
        assert (_serving(platform), _champion(platform)) == ("1", "1")
        data_after = json.loads(platform.ok("data", "status", "--json").stdout)
        assert (data_after["md5"], data_after["workspace"]) == (data_before["md5"], "in sync"), data_after
        assert not (dataset / "fresh.csv").exists()
        assert platform.predict("a fine film").json()["model_version"] == "1"

"""Live quality (issue 25, part 2): accuracy and macro F1 per serving version on labelled feedback, with the
registry's bootstrap intervals and the label count, in `mlops monitor` and on the drift service's /metrics."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mlops_cli.config.loading import load_config

NOW = datetime.now(timezone.utc)


def feedback_record(n: int, version: str, label: str, predicted: str, age: timedelta = timedelta(minutes=5)) -> dict:
    return {"ts": (NOW - age).isoformat(), "key": f"r:v{version}-{n}#0", "request_id": f"v{version}-{n}", "index": 0,
            "label": label, "model_version": version, "predicted": predicted, "source": "gateway"}


def records_with_accuracy(version: str, n: int, right: int, **kwargs) -> list[dict]:
    """n labels for `version`, the first `right` of them predicted correctly (both classes present)."""
    out = []
    for i in range(n):
        label = "Positive" if i % 2 else "Negative"
        wrong = "Negative" if label == "Positive" else "Positive"
        out.append(feedback_record(i, version, label, label if i < right else wrong, **kwargs))
    return out


@pytest.fixture
def feedback(project):
    (project / "mlops.toml").write_text('[project]\nname = "live"\n[feedback]\nmin_labels = 30\naccuracy_floor = 0.7\n')
    records = (records_with_accuracy("1", 200, 120)                                  # 60%: a real drop
               + records_with_accuracy("2", 200, 180)                                # 90%
               + records_with_accuracy("3", 10, 2)                                   # too few labels to judge
               + records_with_accuracy("1", 50, 0, age=timedelta(days=3))            # outside the 24h window
               + [{"ts": NOW.isoformat(), "key": "t:abc", "request_id": None, "index": None, "label": "Positive",
                   "model_version": None, "predicted": None, "text": "fine", "source": "import:x.csv"}])
    path = project / ".mlops" / "feedback.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"torn": ')
    return project


def test_accuracy_and_f1_per_version_with_the_registry_intervals(feedback):
    from mlops_cli.monitoring.live_quality import live_quality
    from mlops_cli.training.intervals import interval

    quality = live_quality(load_config())
    v1, v2, v3 = (quality.versions[v] for v in ("1", "2", "3"))
    assert (v1.labels, v1.accuracy, v2.labels, v2.accuracy) == (200, 0.6, 200, 0.9)
    # The same bootstrap as the registry gate, on the same rows.
    y = np.array([i % 2 for i in range(200)])
    pred = np.where(np.arange(200) < 120, y, 1 - y)
    assert v1.accuracy_interval == tuple(round(b, 4) for b in interval(y, pred, "accuracy", 2))
    assert v1.accuracy_interval[0] < 0.6 < v1.accuracy_interval[1] < 0.7 and v1.below_floor
    assert v1.macro_f1_interval[0] < v1.macro_f1 < v1.macro_f1_interval[1]
    assert not v2.below_floor and v2.accuracy_interval[0] > 0.85
    assert (v3.labels, v3.accuracy, v3.below_floor) == (10, None, False)   # under min_labels: the count only
    assert quality.text_only_labels == 1


def test_monitor_cli_reports_and_fails_below_the_floor(feedback, cli):
    result = cli("monitor", "--json")
    assert result.exit_code == 0, result.stderr
    body = json.loads(result.stdout)
    versions = {v["model_version"]: v for v in body["live_quality"]["versions"]}
    assert versions["1"]["below_floor"] and versions["2"]["accuracy"] == 0.9
    assert body["drift"]["status"] == "insufficient_data"   # beside drift, which has no predictions here
    table = cli("monitor", "--no-drift")
    assert table.exit_code == 0 and "0.600 [" in table.stdout
    assert cli("monitor", "--no-drift", "--fail-below-floor").exit_code == 3
    wider = cli("monitor", "--no-drift", "--json", "--since", (NOW - timedelta(days=4)).isoformat())
    v1 = json.loads(wider.stdout)["live_quality"]["versions"][0]
    assert (v1["labels"], v1["accuracy"]) == (250, 0.48)    # the 3-day-old labels of version 1 join
    both = cli("monitor", "--window", "1h", "--since", "2026-01-01T00:00")
    assert both.exit_code == 2 and "--window and --since" in both.stderr


def test_drift_service_exports_live_quality_even_without_a_drift_verdict(feedback):
    from mlops_cli.services.drift_service import DriftMonitor

    monitor = DriftMonitor(load_config(), reference_loader=lambda config, version: pytest.fail("no reference needed"))
    monitor.recompute()
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(monitor.metrics.registry).decode())}
    accuracy = {s.labels["version"]: s.value for s in families["mlops_live_accuracy"].samples}
    assert accuracy == {"1": 0.6, "2": 0.9}
    high = {s.labels["version"]: s.value for s in families["mlops_live_accuracy_high"].samples}
    assert high["1"] < 0.7 < high["2"]
    assert {s.labels["version"]: s.value for s in families["mlops_live_labels"].samples} == {"1": 200, "2": 200, "3": 10}
    assert families["mlops_live_accuracy_floor"].samples[0].value == 0.7
    assert monitor.summary()["live_quality"]["versions"][0]["model_version"] == "1"

"""`mlops drift`: windows, the prediction log, the reference, Evidently's verdict, exit codes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from .drift_support import (MALFORMED_LINES, MODEL_NAME, lines_like_reference, log_line, predict_batches,
                            shifted_texts, start_serving)

COLUMNS = ["text_length", "word_count", "oov_share", "label", "confidence"]


@pytest.fixture
def log_path(tmp_path, monkeypatch):
    """Each test writes its own prediction log; the shared project's config points at it via env."""
    path = tmp_path / "predictions.jsonl"
    monkeypatch.setenv("MLOPS_GATEWAY__PREDICTION_LOG", str(path))
    return path


def drift(cli, registered, *args):
    return cli("--config", str(registered.config_file), *args)


# -- parsing -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [("30m", 1800), ("24h", 86400), ("7d", 604800), ("90s", 90), ("1.5h", 5400)])
def test_parse_duration(text, seconds):
    from mlops_cli.common.time_window import parse_duration

    assert parse_duration(text).total_seconds() == seconds


def test_bad_window_and_since_are_one_line_errors(cli, project):
    bad = cli("drift", "--window", "3x")
    assert bad.exit_code == 2 and "invalid window '3x'" in bad.stderr and "Traceback" not in bad.stderr
    bad = cli("drift", "--since", "last tuesday")
    assert bad.exit_code == 2 and "not an ISO 8601 time" in bad.stderr
    both = cli("drift", "--window", "1h", "--since", "2026-01-01T00:00")
    assert both.exit_code == 2 and "--window and --since" in both.stderr


@pytest.mark.parametrize("window", ["5000000d", "9999999999d", "36501d"])
def test_a_window_longer_than_a_century_is_refused_with_the_bound(cli, project, window):
    # issue 26 D6: these raised OverflowError (datetime minus timedelta past year 1, timedelta itself)
    result = cli("drift", "--window", window)
    assert result.exit_code == 2, result.stderr
    assert f"invalid window {window!r}: at most 36500d (100 years)" in result.stderr
    assert "Traceback" not in result.stderr and "Overflow" not in result.stderr


def test_since_without_offset_is_utc():
    from mlops_cli.common.time_window import parse_since

    assert parse_since("2026-11-26T08:00") == datetime(2026, 11, 26, 8, 0, tzinfo=timezone.utc)
    assert parse_since("2026-11-26T08:00+01:00") == datetime(2026, 11, 26, 7, 0, tzinfo=timezone.utc)


# -- reading the prediction log --------------------------------------------------------------------

def test_log_reader_skips_and_counts_bad_lines(tmp_path):
    from mlops_cli.monitoring.prediction_log_reader import read_prediction_log

    now = datetime.now(timezone.utc)
    start = now - timedelta(hours=1)
    missing = read_prediction_log(tmp_path / "absent.jsonl", start, now)
    assert not missing.exists and missing.records == [] and missing.malformed == 0

    path = tmp_path / "log.jsonl"
    path.write_text("")
    assert read_prediction_log(path, start, now).records == []

    good = [log_line(now - timedelta(minutes=i)) for i in range(1, 4)]
    old = log_line(now - timedelta(hours=2))
    nan = log_line(now).replace('"oov_share": 0.05', '"oov_share": NaN')
    partial = log_line(now - timedelta(seconds=1)).rstrip("\n")  # the gateway is mid-write
    path.write_text(good[0] + MALFORMED_LINES[0] + "\n" + good[1] + "".join(MALFORMED_LINES[1:]) + old + nan + good[2]
                    + partial)
    scan = read_prediction_log(path, start, now)
    assert len(scan.records) == 3
    assert scan.malformed == len(MALFORMED_LINES) + 1  # + the NaN line
    assert scan.first_malformed == 2
    assert scan.outside_window == 1
    assert {r["model_version"] for r in scan.records} == {"1"}
    assert all(isinstance(r["text_length"], float) for r in scan.records)


# -- the reference ----------------------------------------------------------------------------------

def test_registered_version_carries_its_reference(registered, reference):
    from mlops_cli.adapters import mlflow_tracking
    from mlops_cli.config.loading import load_config

    cfg = load_config(registered.config_file, env={})
    tags = mlflow_tracking.client(cfg).get_model_version(MODEL_NAME, registered.version).tags
    assert tags["drift_reference"].startswith("runs:/") and tags["drift_reference"].endswith("reference.csv")
    assert list(reference.columns) == COLUMNS
    assert len(reference) == 400  # [drift].reference_samples of the 546 training reviews
    assert set(reference["label"]) <= {"Negative", "Positive"}
    assert reference["confidence"].between(0.5, 1.0).all()
    assert (reference["word_count"] > 0).all() and reference["oov_share"].between(0, 1).all()


def test_reference_oov_share_sees_the_model_vocabulary(registered, reference):
    """oov_share is only a feature when the saved classifier ships its vocabulary (vocab.txt)."""
    from models.text_features import load_vocab

    assert load_vocab(registered.classifier_dir), (
        f"{registered.classifier_dir} has no vocab.txt: SentimentClassifier.save must write it (contract), "
        "otherwise every oov_share is 0")
    assert reference["oov_share"].max() > 0


def test_reference_features_match_what_the_gateway_logs(tiny_base_model, tmp_path):
    """Reference texts go through the gateway's text policy, so HTML entities are not drift."""
    from mlops_cli.common.text_policy import prepare_text
    from mlops_cli.config.loading import load_config
    from mlops_cli.registry.drift_reference import compute_reference

    from .drift_support import build_classifier

    cfg = load_config(overrides={"gateway.max_words": 8})
    clf = build_classifier(tiny_base_model, tmp_path / "clf")
    raw = "It didn&#039;t   help at all, and the side effects were awful for weeks on end."
    frame = compute_reference(clf, [raw], prepare=lambda t: prepare_text(t, "head", cfg.gateway.max_words))
    assert frame.loc[0, "word_count"] == 8
    assert frame.loc[0, "text_length"] == len("It didn't help at all, and the side")


# -- verdicts ---------------------------------------------------------------------------------------

def test_too_little_data_is_no_verdict(cli, registered, log_path):
    now = datetime.now(timezone.utc)
    log_path.write_text("".join(log_line(now - timedelta(minutes=i)) for i in range(5)))
    result = drift(cli, registered, "drift")
    assert result.exit_code == 0
    assert "not enough data" in result.stderr and "5 prediction(s)" in result.stderr and "min_samples = 30" in result.stderr
    assert drift(cli, registered, "drift", "--fail-on-drift").exit_code == 0
    strict = drift(cli, registered, "--json", "drift", "--fail-on-drift", "--strict")
    assert strict.exit_code == 3
    body = json.loads(strict.stdout)
    assert body["status"] == "insufficient_data" and body["dataset_drift"] is None and body["samples"] == 5


def test_missing_log_is_no_verdict(cli, registered, log_path):
    result = drift(cli, registered, "--json", "drift")
    assert result.exit_code == 0
    body = json.loads(result.stdout)
    assert body["status"] == "insufficient_data" and body["samples"] == 0 and "no prediction log yet" in body["message"]


def test_file_log_in_distribution_then_shifted(cli, registered, reference, log_path, tmp_path):
    lines = lines_like_reference(reference, 80, seed=3)
    log_path.write_text("".join(lines[:40]) + MALFORMED_LINES[0] + "".join(lines[40:]))
    out = tmp_path / "calm.html"
    calm = drift(cli, registered, "--json", "drift", "--fail-on-drift", "-o", str(out))
    assert calm.exit_code == 0, calm.stderr
    body = json.loads(calm.stdout)
    assert body["status"] == "ok" and body["dataset_drift"] is False
    assert body["samples"] == 80 and body["malformed_lines"] == 1 and body["model_version"] == registered.version
    assert [f["feature"] for f in body["features"]] == COLUMNS
    assert all(f["method"] for f in body["features"])
    assert {s["label"] for s in body["labels"]} <= {"Negative", "Positive"}
    assert out.is_file() and body["report_path"] == str(out)

    # The same traffic, but every text 20x longer with a tenth of the words known: drift.
    now = datetime.now(timezone.utc)
    shifted = [log_line(now - timedelta(seconds=i), registered.version, r["label"], r["confidence"],
                        r["text_length"] * 20, r["word_count"] * 20, 0.9)
               for i, r in enumerate(reference.head(40).to_dict("records"))]
    log_path.write_text("".join(shifted))
    result = drift(cli, registered, "drift", "--fail-on-drift", "-o", str(tmp_path / "drift.html"))
    assert result.exit_code == 3
    assert "dataset drift detected" in result.stderr
    assert "text_length" in result.stdout and "predicted labels" in result.stdout


def test_unknown_version_is_a_clear_error(cli, registered, reference, log_path):
    log_path.write_text("".join(lines_like_reference(reference, 40, version="99")))
    result = drift(cli, registered, "drift")
    assert result.exit_code == 2
    assert "has no version 99" in result.stderr and "Traceback" not in result.stderr


def test_version_flag_picks_that_versions_predictions(cli, registered, reference, log_path):
    lines = lines_like_reference(reference, 40) + lines_like_reference(reference, 10, version="2")
    log_path.write_text("".join(lines))
    result = drift(cli, registered, "--json", "drift", "--version", registered.version)
    body = json.loads(result.stdout)
    assert body["samples"] == 40 and body["other_version_samples"] == 10 and body["status"] == "ok"


@pytest.mark.slow
def test_gateway_traffic_in_distribution_then_shifted(cli, registered, log_path, tmp_path):
    """Acceptance: real predictor + gateway write the log; drift is absent for review-like texts and
    detected (exit 3, complete HTML report) for long off-domain texts."""
    from mlops_cli.data.data_sources import load_drugscom

    predictor, gateway, url = start_serving(registered, tmp_path, {"MLOPS_GATEWAY__PREDICTION_LOG": str(log_path)})
    try:
        predict_batches(url, [e.text for e in load_drugscom("binary").test[:96]])
        calm_html = tmp_path / "calm.html"
        calm = drift(cli, registered, "--json", "drift", "--window", "1h", "--fail-on-drift", "-o", str(calm_html))
        assert calm.exit_code == 0, calm.stderr
        body = json.loads(calm.stdout)
        assert body["status"] == "ok" and body["samples"] == 96 and body["dataset_drift"] is False, body

        since = datetime.now(timezone.utc).isoformat()
        predict_batches(url, shifted_texts(48))
        drift_html = tmp_path / "drift.html"
        shifted = drift(cli, registered, "--json", "drift", "--since", since, "--fail-on-drift", "-o", str(drift_html))
        assert shifted.exit_code == 3, shifted.stderr
        body = json.loads(shifted.stdout)
        assert body["dataset_drift"] is True and body["samples"] == 48
        drifted = {f["feature"] for f in body["features"] if f["drifted"]}
        assert {"text_length", "word_count"} <= drifted
    finally:
        gateway.stop()
        predictor.stop()
    html = drift_html.read_text()
    assert html.lstrip().lower().startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    assert "text_length" in html and len(html) > 100_000


def test_evidently_runs_without_network(reference, monkeypatch, tmp_path):
    """No descriptor or telemetry may reach out: every connection attempt fails the test."""
    import socket

    from mlops_cli.common.atomic_file import write_atomically
    from mlops_cli.monitoring.drift_compare import compare, frame_from_records
    from mlops_cli.monitoring.prediction_log_reader import read_prediction_log

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access during drift computation: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    now = datetime.now(timezone.utc)
    path = tmp_path / "log.jsonl"
    path.write_text("".join(lines_like_reference(reference, 40, now=now)))
    current = frame_from_records(read_prediction_log(path, now - timedelta(hours=1), now).records)
    features, share, dataset_drift, snapshot = compare(reference, current, 0.5)
    write_atomically(tmp_path / "r.html", snapshot.get_html_str(as_iframe=False))
    assert len(features) == 5 and not dataset_drift
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_report_into_a_directory(cli, registered, reference, log_path, tmp_path):
    """`drift -o DIR/` writes DIR/report.html (it was an IsADirectoryError traceback)."""
    log_path.write_text("".join(lines_like_reference(reference, 40, seed=5)))
    out_dir = tmp_path / "reports"
    out_dir.mkdir()
    result = drift(cli, registered, "--json", "drift", "-o", f"{out_dir}/")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["report_path"] == str(out_dir / "report.html")
    assert [p.name for p in out_dir.iterdir()] == ["report.html"]
    # issue 26 D35: the page said nothing of what it compared
    page = (out_dir / "report.html").read_text()
    from mlops_cli.config.loading import load_config

    name = load_config(registered.config_file, env={}).project.name
    title = f"Drift report: {name}, model version {registered.version}"
    assert f"<title>{title}</title>" in page and f"<h1>{title}</h1>" in page
    body = json.loads(result.stdout)
    for shown in (body["window_start"], body["window_end"], "40 compared of 40 in the window", "no dataset drift"):
        assert shown in page


# -- bounded memory ----------------------------------------------------------------------------------

def _log_of(path, n, now, version="1"):
    with path.open("w") as fh:
        for i in range(n):
            fh.write(log_line(now - timedelta(seconds=n - i), version, "Positive", 0.7, 100 + i, 20, 0.1))
    return path


def test_window_sample_is_bounded_uniform_and_counts_everything(tmp_path):
    from mlops_cli.monitoring.prediction_log_reader import sample_prediction_log

    now = datetime.now(timezone.utc)
    path = _log_of(tmp_path / "p.jsonl", 5000, now)
    with path.open("a") as fh:
        fh.write(log_line(now, "2") + MALFORMED_LINES[0])
    window = sample_prediction_log([path], now - timedelta(hours=2), now, sample_size=200, seed=1)
    assert window.counts == {"1": 5000, "2": 1} and window.latest_version == "2" and window.malformed == 1
    sample = window.samples["1"]
    assert len(sample) == 200 and len({r["text_length"] for r in sample}) == 200
    positions = sorted(r["text_length"] - 100 for r in sample)
    assert positions[20] < 1000 and positions[-20] > 4000  # drawn from the whole window, not its start or end
    again = sample_prediction_log([path], now - timedelta(hours=2), now, sample_size=200, seed=1)
    assert [r["text_length"] for r in again.samples["1"]] == [r["text_length"] for r in sample]  # seeded


def test_reading_the_window_does_not_grow_with_the_log(tmp_path):
    import tracemalloc

    from mlops_cli.monitoring.prediction_log_reader import sample_prediction_log

    now = datetime.now(timezone.utc)
    peaks = []
    for n in (2_000, 20_000):
        path = _log_of(tmp_path / f"p{n}.jsonl", n, now)
        tracemalloc.start()
        sample_prediction_log([path], now - timedelta(hours=12), now, sample_size=300)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < peaks[0] * 1.5 + 100_000, peaks  # all records kept would be ~10x


def test_drift_compares_a_sample_says_so_and_reads_rotated_files(registered, reference, log_path, tmp_path, monkeypatch):
    """The rotated file (the gateway's `<name>.1`) is part of the window; 30 of 80 predictions compared."""
    from mlops_cli.config.loading import load_config
    from mlops_cli.monitoring.drift import run_drift

    lines = lines_like_reference(reference, 80, seed=9)
    log_path.with_name(log_path.name + ".1").write_text("".join(lines[40:]))  # older half, rotated
    log_path.write_text("".join(lines[:40]))
    monkeypatch.setenv("MLOPS_DRIFT__SAMPLE_SIZE", "30")
    cfg = load_config(registered.config_file)
    result = run_drift(cfg, output=tmp_path / "r.html", reference_loader=lambda c, v: reference)
    assert result.status == "ok" and result.samples == 80 and result.compared == 30 and result.sample_size == 30
    assert "a random sample of 30 of 80 prediction(s) compared" in result.message

"""Prediction log rotation and retention by size, count and age; a failing disk never fails a prediction."""

from __future__ import annotations

import json
import logging
import os
import time

import pytest

from mlops_cli.services.prediction_log import PredictionLog, log_files


def _write(plog: PredictionLog, n: int) -> None:
    for i in range(n):
        plog.record(f"r{i}", "a fine review", "Positive", 0.9, "1", {})


def test_rotates_past_max_bytes_and_keeps_at_most_backups(tmp_path):
    path = tmp_path / "predictions.jsonl"
    plog = PredictionLog(path, False, max_bytes=2048, backups=2)
    _write(plog, 200)  # ~170 bytes a line: several rotations
    assert plog.rotations >= 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.jsonl", "predictions.jsonl.1", "predictions.jsonl.2"]
    for p in log_files(path, 2):
        assert p.stat().st_size <= 2048
        assert all(json.loads(line)["label"] == "Positive" for line in p.read_text().splitlines())  # whole lines only
    assert [p.name for p in log_files(path, 2)] == ["predictions.jsonl.2", "predictions.jsonl.1", "predictions.jsonl"]


def test_rotated_files_older_than_max_age_are_deleted(tmp_path):
    path = tmp_path / "predictions.jsonl"
    old = tmp_path / "predictions.jsonl.1"
    old.write_text("{}\n")
    week_ago = time.time() - 8 * 86400
    os.utime(old, (week_ago, week_ago))
    PredictionLog(path, False, max_bytes=4096, backups=3, max_age_s=7 * 86400)
    assert not old.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files; /dev/full stands in below")
def test_unwritable_log_is_counted_and_logged_once(tmp_path, caplog):
    path = tmp_path / "predictions.jsonl"
    path.write_text("")
    path.chmod(0o400)
    failures = []
    plog = PredictionLog(path, False, on_failure=lambda: failures.append(1))
    with caplog.at_level(logging.ERROR, logger="mlops.prediction_log"):
        _write(plog, 5)
    assert plog.failures == 5 and len(failures) == 5
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1


def test_full_disk_is_counted_logged_once_and_recovers(tmp_path, caplog):
    """/dev/full answers every write with ENOSPC, as a full disk does."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    link = tmp_path / "predictions.jsonl"
    link.symlink_to("/dev/full")
    failures = []
    plog = PredictionLog(link, False, on_failure=lambda: failures.append(1))
    with caplog.at_level(logging.WARNING, logger="mlops.prediction_log"):
        _write(plog, 4)
        assert plog.failures == 4 and len(failures) == 4
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "No space left" in errors[0].error
        link.unlink()  # space again
        _write(plog, 2)
    assert plog.failures == 4 and len(link.read_text().splitlines()) == 2
    assert any("writable again" in r.getMessage() for r in caplog.records)

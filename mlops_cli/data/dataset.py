"""The review dataset: build it from packaged review corpora or a user's CSV, split, and write it.

Files: `<data.dir>/reviews/train.csv` and `test.csv`, columns `text,label,source`, labels capitalised
(`Positive`, `Negative`, and `Neutral` in three-class mode), `source` naming where the row came from
(see data_sources.py), and `sources.json` with each source's package, version, licence and row counts.
The `reviews` directory is DVC-tracked, so the provenance travels with the data.

Three splits, never mixed: `test` (written here, read only to report), and `train`, which training cuts
into the rows it fits on and a validation split (`carve_validation`: stratified by source and label,
seeded by [data].seed) on which every choice is made.
"""

from __future__ import annotations

import csv
import io
import json
import random
import secrets
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..common.csv_input import unreadable_row, utf8_text
from ..common.errors import DataError, PreflightError
from ..common.text_policy import clean_text
from ..config.settings import Config
from .labels import BINARY_LABELS, THREE_LABELS, labels_for, rating_label  # noqa: F401  (re-exported: callers import them from here)

DATASET_NAME = "reviews"
SPLITS = ("train", "test")
MANIFEST = "sources.json"
# Every class needs this many rows in each of fit / validation / test: a threshold, a temperature or a
# bootstrap on fewer is noise, and scikit-learn refuses a class with none.
MIN_ROWS_PER_CLASS = 2



@dataclass(frozen=True)
class Example:
    text: str
    label: str
    source: str = ""


@dataclass
class Dataset:
    train: list[Example]
    test: list[Example]

    def counts(self) -> dict[str, dict[str, int]]:
        return {split: dict(sorted(Counter(e.label for e in rows).items())) for split, rows in self.splits()}

    def counts_by_source(self) -> dict[str, dict[str, dict[str, int]]]:
        out: dict[str, dict[str, dict[str, int]]] = {}
        for split_name, rows in self.splits():
            for e in rows:
                per = out.setdefault(e.source or "unknown", {}).setdefault(split_name, {})
                per[e.label] = per.get(e.label, 0) + 1
        return {s: {k: dict(sorted(v.items())) for k, v in sorted(splits.items())} for s, splits in sorted(out.items())}

    def splits(self) -> Iterable[tuple[str, list[Example]]]:
        return (("train", self.train), ("test", self.test))


def dataset_dir(config: Config) -> Path:
    return config.path(config.data.dir) / DATASET_NAME


# -- a user's own file ---------------------------------------------------------------------------

def read_user_file(path: Path, text_col: str, label_col: str, classes: str) -> list[Example]:
    source = f"import:{path.name}"
    if not path.is_file():
        raise DataError(f"{path}: {'is a directory, not a file' if path.is_dir() else 'no such file'}")
    if path.suffix.lower() in {".parquet", ".pq"}:
        rows, lines = _read_parquet(path), None
    else:
        rows, lines = _read_csv(path)
    if not rows:
        raise DataError(f"{path}: no data rows")
    header = list(rows[0].keys())
    for col in (text_col, label_col):
        if col not in header:
            raise DataError(f"{path}: missing column {col!r} (columns: {', '.join(map(str, header))})",
                            hint="name the right ones with --text-col/--label-col")
    allowed = labels_for(classes)
    examples = []
    for number, row in enumerate(rows, start=1):
        where = f"{path}: row {number}" + (f" (line {lines[number - 1]})" if lines else "")
        text = clean_text(_cell_text(row.get(text_col)))
        if not text:
            raise DataError(f"{where}: empty text in column {text_col!r}")
        raw_label = _cell_text(row.get(label_col)).strip()
        label = rating_label(raw_label)
        if label not in allowed:
            raise DataError(
                f"{where}: unknown label {raw_label!r} in column {label_col!r}",
                hint=f"labels must be one of {', '.join(allowed)} (case-insensitive; pos/neg/1/0 accepted)",
            )
        examples.append(Example(text, label, source))
    return examples


def _cell_text(value: object) -> str:
    """A cell as the text a user would read in it: parquet gives ints and floats (a label 0 is not empty,
    and 1.0 is the label 1), CSV gives strings; a missing value is empty."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _read_csv(path: Path) -> tuple[list[dict[str, str]], list[int]]:
    """The rows, and the line each one ends on (a quoted field may span lines)."""
    text = utf8_text(path, path.read_bytes())
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows: list[dict[str, str]] = []
    lines: list[int] = []
    try:
        for row in reader:
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as exc:
        # The row that failed starts on the line after the last good one: where its open quote is.
        raise unreadable_row(str(path), len(rows) + 1, (lines[-1] if lines else 1) + 1, exc) from None
    return rows, lines


def _read_parquet(path: Path) -> list[dict[str, object]]:
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{path}: not a readable parquet file: {exc}") from None
    # Missing cells (NaN, None, pd.NA) become None, so they read as empty rather than as "nan".
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


def text_key(e: Example) -> str:
    """What makes two reviews the same review: their cleaned text, ignoring case."""
    return e.text.casefold()


def unique(rows: list[Example]) -> list[Example]:
    """Each text once (the first kept): a review in both train and test would inflate the test metrics."""
    seen: set[str] = set()
    out = []
    for e in rows:
        if text_key(e) not in seen:
            seen.add(text_key(e))
            out.append(e)
    return out


def split(examples: list[Example], test_size: float, seed: int) -> Dataset:
    """Stratified by source and label, deterministic: same rows + seed -> same split."""
    rng = random.Random(seed)
    train: list[Example] = []
    test: list[Example] = []
    for group in _strata(examples):
        rng.shuffle(group)
        n_test = _held_out(len(group), test_size)
        test.extend(group[:n_test])
        train.extend(group[n_test:])
    return Dataset(train=train, test=test)


def carve_validation(train: list[Example], validation_size: float, seed: int) -> tuple[list[Example], list[int]]:
    """The validation split cut from the train split: (rows to fit on, row numbers of train.csv held out).

    Stratified by source and label and seeded, so the same train.csv and [data] settings always give the
    same validation rows; training records their row numbers in the run.
    """
    rng = random.Random(f"validation-{seed}")
    by_stratum: dict[tuple[str, str], list[int]] = {}
    for i, e in enumerate(train):
        by_stratum.setdefault((e.source, e.label), []).append(i)
    held: list[int] = []
    for key in sorted(by_stratum):
        group = by_stratum[key][:]
        rng.shuffle(group)
        held.extend(group[:_held_out(len(group), validation_size)])
    held.sort()
    held_set = set(held)
    return [e for i, e in enumerate(train) if i not in held_set], held


def _strata(examples: list[Example]) -> list[list[Example]]:
    by_key: dict[tuple[str, str], list[Example]] = {}
    for e in examples:
        by_key.setdefault((e.source, e.label), []).append(e)
    return [by_key[k][:] for k in sorted(by_key)]


def _held_out(n: int, share: float) -> int:
    """Rows of a group of n that go to the held-out side: at least one, never all."""
    return min(n - 1, max(1, round(n * share))) if n > 1 else 0


def check_split_sizes(dataset: Dataset, classes: str, test_size: float, validation_size: float, where: str) -> None:
    """Every class has MIN_ROWS_PER_CLASS rows in fit, validation and test, or one clear refusal."""
    labels = labels_for(classes)
    per_class_train = Counter(e.label for e in dataset.train)
    per_class_test = Counter(e.label for e in dataset.test)
    fit, held = carve_validation(dataset.train, validation_size, seed=0)
    per_class_fit = Counter(e.label for e in fit)
    per_class_val = Counter(dataset.train[i].label for i in held)
    short = []
    for label in labels:
        got = {"fit": per_class_fit[label], "validation": per_class_val[label], "test": per_class_test[label]}
        if min(got.values()) < MIN_ROWS_PER_CLASS:
            have = per_class_train[label] + per_class_test[label]
            short.append(f"{label}: {have} row(s) ({', '.join(f'{k} {v}' for k, v in got.items())})")
    if short:
        need = rows_needed_per_class(test_size, validation_size)
        raise DataError(
            f"{where}: too few rows per class to train, validate and test: {'; '.join(short)}",
            hint=f"every class ({', '.join(labels)}) needs at least {need} rows, so that fit, validation and "
                 f"test each get {MIN_ROWS_PER_CLASS} (test share {test_size:g}, "
                 f"[data].validation_size {validation_size:g})"
                 + ("; or set [data].classes = \"binary\"" if classes == "three" else ""))


def rows_needed_per_class(test_size: float, validation_size: float) -> int:
    """The smallest class size that leaves MIN_ROWS_PER_CLASS rows in each of fit, validation and test."""
    for n in range(MIN_ROWS_PER_CLASS * 3, 100_000):
        n_test = _held_out(n, test_size)
        n_val = _held_out(n - n_test, validation_size)
        if min(n_test, n_val, n - n_test - n_val) >= MIN_ROWS_PER_CLASS:
            return n
    raise ValueError("split shares leave no rows")


# -- files ----------------------------------------------------------------------------------------

def write_dataset(dataset: Dataset, target: Path, manifest: dict | None = None) -> None:
    """Write both splits (and the provenance manifest) to a temp dir, then swap it in: never half-written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # mkdir, not tempfile.mkdtemp: mkdtemp makes 0700, and the dataset is a user's data directory that follows
    # the umask like any other (0755 under 022), also once renamed into place.
    staging = target.parent / f".{target.name}-{secrets.token_hex(6)}"
    staging.mkdir()
    try:
        for name, rows in dataset.splits():
            with (staging / f"{name}.csv").open("w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh, lineterminator="\n")
                writer.writerow(["text", "label", "source"])
                writer.writerows((e.text, e.label, e.source) for e in rows)
        if manifest is not None:
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
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
        return [Example(r["text"], r["label"], r.get("source") or "") for r in csv.DictReader(fh)]


def read_manifest(config: Config) -> dict:
    """The dataset's provenance (sources.json), or {} for a dataset written before it existed."""
    file = dataset_dir(config) / MANIFEST
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}

"""`mlops data …`: build, import, version and move the review dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..adapters.dvc_store import DvcStore, RemoteSpec
from ..config.settings import Config
from .dataset import Dataset, check_split_sizes, dataset_dir, read_user_file, split, unique, write_dataset


def local_remote(config: Config) -> Path | None:
    """The DVC remote's directory when [data].remote is one on this machine (None for s3://...)."""
    remote = config.data.remote
    return None if "://" in remote else config.path(remote)


def store(config: Config) -> DvcStore:
    directory = local_remote(config)
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    url = config.data.remote if directory is None else str(directory)
    return DvcStore(config.root, RemoteSpec(url=url, endpoint_url=config.data.s3_endpoint_url))


def prepare(config: Config) -> dict[str, Any]:
    """Build the dataset from the packaged corpora in [data].sources and DVC-track it. Deterministic."""
    from . import data_sources

    d = config.data
    dataset = data_sources.load_sources(list(d.sources), d.classes, d.test_size, d.seed, d.max_rows_per_source)
    check_split_sizes(dataset, d.classes, d.test_size, d.validation_size, where=f"[data].sources {', '.join(d.sources)}")
    return _save(config, dataset, [data_sources.describe(name) for name in d.sources], d.test_size, d.seed)


def import_file(config: Config, path: Path, text_col: str, label_col: str,
                test_size: float | None = None, seed: int | None = None) -> dict[str, Any]:
    rows = read_user_file(path, text_col, label_col, config.data.classes)
    # As the packaged corpora are (data_sources.load_sources): each text once, so none is in train and test.
    examples = unique(rows)
    test_size = test_size if test_size is not None else config.data.test_size
    seed = seed if seed is not None else config.data.seed
    dataset = split(examples, test_size, seed)
    # Before anything is written: a file too small to train, validate and test on is refused here,
    # not by scikit-learn in the middle of `mlops train`.
    check_split_sizes(dataset, config.data.classes, test_size, config.data.validation_size, where=str(path))
    dropped = len(rows) - len(examples)
    result = _save(config, dataset, [{"name": f"import:{path.name}", "file": str(path.resolve()),
                                      "description": "imported with `mlops data import`",
                                      "duplicates_dropped": dropped}], test_size, seed)
    return {**result, "duplicates_dropped": dropped}


def _save(config: Config, dataset: Dataset, sources: list[dict[str, Any]], test_size: float, seed: int) -> dict[str, Any]:
    """Write and track the dataset; sources.json records the split as it was made (flags included)."""
    target = dataset_dir(config)
    by_source = dataset.counts_by_source()
    manifest = {"classes": config.data.classes, "test_size": test_size, "seed": seed,
                "max_rows_per_source": config.data.max_rows_per_source,
                "sources": [{**s, "counts": by_source.get(s["name"], {})} for s in sources]}
    write_dataset(dataset, target, manifest)
    md5 = store(config).track(target)
    return {"path": str(target), "sources": manifest["sources"], "md5": md5, "counts": dataset.counts()}


def push(config: Config) -> dict[str, Any]:
    """`pushed`: objects uploaded (each new file and the directory's listing; 0: the remote had them all)."""
    s, path = store(config), dataset_dir(config)
    sent = s.push(path)
    return {"pushed": sent.objects, "path": str(path), "files": s.tracked_files(path), "remote": s.remote.url,
            "warnings": sent.warnings}


def pull(config: Config) -> dict[str, Any]:
    """`pulled`: files written into the workspace; `fetched`: objects downloaded into the cache."""
    s, path = store(config), dataset_dir(config)
    got = s.pull(path)
    return {"pulled": got.files, "fetched": got.objects, "path": str(path), "files": s.tracked_files(path),
            "remote": s.remote.url, "warnings": got.warnings}


def status(config: Config) -> dict[str, Any]:
    s = store(config)
    return {"path": str(dataset_dir(config)), "remote_url": s.remote.url, **s.status(dataset_dir(config))}


def fingerprint(config: Config) -> str | None:
    """The DVC md5 of the dataset, for lineage tags on runs and model versions."""
    return DvcStore.fingerprint(dataset_dir(config))

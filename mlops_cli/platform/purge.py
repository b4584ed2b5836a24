"""What `mlops down --purge` deletes on this machine, said in full before it is deleted.

It deletes the state dir (runs, the MLflow store, models, logs, generated secrets, the prediction log: each
entry is named as it is found) and the DVC cache. It keeps the dataset and the DVC remote: a remote
configured inside the state dir ([data].remote = ".mlops/dvc-remote", the default before issue 26) is left
in place, with the directories above it, so `mlops data pull` can still bring the data back.

Example::

    plan = purge_plan(config)
    if confirm(plan.question()):
        removed = plan.run()
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ..config.settings import Config
from ..data.dataset import dataset_dir
from ..data.lifecycle import local_remote


@dataclass(frozen=True)
class PurgePlan:
    state_dir: Path
    entries: tuple[str, ...]  # what the state dir holds now, but the remote
    cache: Path               # the DVC cache
    remote: Path | None       # the local DVC remote, kept
    dataset: Path

    @property
    def remote_inside(self) -> bool:
        return self.remote is not None and _within(self.remote, self.state_dir)

    def question(self) -> str:
        held = f" ({', '.join(self.entries)})" if self.entries else ""
        kept = [f"the dataset {self.dataset}"]
        if self.remote is not None:
            kept.append(f"the DVC remote {self.remote}" + (
                f" ([data].remote, inside {self.state_dir}: everything around it goes)" if self.remote_inside else ""))
        return (f"--purge deletes {self.state_dir}{held} and the DVC cache {self.cache}; "
                f"it keeps {' and '.join(kept)}.")

    def run(self) -> list[tuple[Path, str]]:
        """Delete; returns (path, what happened) for each path touched or kept."""
        done: list[tuple[Path, str]] = []
        if self.state_dir.exists():
            keep = [self.remote] if self.remote_inside else []
            _remove_except(self.state_dir, keep)
            done.append((self.state_dir, "deleted" + (f", except the DVC remote {self.remote}" if keep else "")))
        if self.cache.exists():
            shutil.rmtree(self.cache)
            done.append((self.cache, "deleted"))
        if self.remote_inside:
            done.append((self.remote, "kept (the DVC remote)"))
        return done


def purge_plan(config: Config) -> PurgePlan:
    state, remote = config.state_dir, local_remote(config)
    kept = remote.resolve() if remote is not None else None
    entries = tuple(sorted(p.name for p in state.iterdir() if p.resolve() != kept)) if state.is_dir() else ()
    return PurgePlan(state_dir=state, entries=entries, cache=config.root / ".dvc" / "cache",
                     remote=remote, dataset=dataset_dir(config))


def _within(path: Path, parent: Path) -> bool:
    path, parent = path.resolve(), parent.resolve()
    return path == parent or parent in path.parents


def _remove_except(root: Path, keep: list[Path]) -> None:
    """Delete `root` and everything under it except each path in `keep` and the directories leading to it."""
    if any(_within(root, k) for k in keep):
        return
    if not any(_within(k, root) for k in keep):
        if root.is_dir() and not root.is_symlink():
            shutil.rmtree(root)
        else:
            root.unlink()
        return
    for child in root.iterdir():
        _remove_except(child, keep)

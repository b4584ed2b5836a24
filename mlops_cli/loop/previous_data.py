"""The project's data version as it was before a retrain, put back when no challenger comes of it.

`mlops retrain` writes its new dataset version (previous train + feedback, `fresh.csv`) where the project's
data lives, because training reads it from there. When the gate refuses the challenger, or the retrain fails,
that version must not stay current: the next `mlops train` or `data push` would use labels the gate has just
judged bad. So the dataset directory and its `.dvc` file are copied aside first and swapped back then; DVC's
cache keeps the refused version's objects, which the challenger's MLflow run names by md5 as its evidence.

A retrain killed with -9 leaves the copy behind; the next one puts it back before anything else, so it starts
from the champion's data, not from the half-done version.
"""

from __future__ import annotations

import os
import secrets
import shutil

from ..config.settings import Config
from ..data.dataset import dataset_dir

DATA, DVC_FILE, NO_DVC_FILE = "data", "dvc-file", "no-dvc-file"


class PreviousData:
    def __init__(self, config: Config) -> None:
        self.target = dataset_dir(config)
        self.dvc_file = self.target.with_name(self.target.name + ".dvc")
        self.kept = self.target.with_name(f".{self.target.name}-before-retrain")

    @classmethod
    def set_aside(cls, config: Config) -> "PreviousData":
        previous = cls(config)
        if previous.kept.exists():
            previous.restore()
        for partial in previous.target.parent.glob(f"{previous.kept.name}-*.partial"):
            shutil.rmtree(partial, ignore_errors=True)
        staging = previous.kept.with_name(f"{previous.kept.name}-{secrets.token_hex(4)}.partial")
        try:
            shutil.copytree(previous.target, staging / DATA)
            if previous.dvc_file.exists():
                shutil.copy2(previous.dvc_file, staging / DVC_FILE)
            else:   # untracked data: the .dvc file the retrain writes goes again
                (staging / NO_DVC_FILE).touch()
            # Only a whole copy has the name restore() trusts: a kill during the copy leaves a .partial.
            os.rename(staging, previous.kept)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return previous

    def restore(self) -> None:
        """Swap the copy back in (each step can be repeated if a kill interrupts this one)."""
        if (self.kept / DATA).exists():
            discarded = self.target.with_name(f".{self.target.name}-discarded-{secrets.token_hex(4)}")
            if self.target.exists():
                os.rename(self.target, discarded)
            os.rename(self.kept / DATA, self.target)
            shutil.rmtree(discarded, ignore_errors=True)
        if (self.kept / DVC_FILE).exists():
            os.replace(self.kept / DVC_FILE, self.dvc_file)
        elif (self.kept / NO_DVC_FILE).exists():
            self.dvc_file.unlink(missing_ok=True)
        shutil.rmtree(self.kept, ignore_errors=True)

    def discard(self) -> None:
        shutil.rmtree(self.kept, ignore_errors=True)

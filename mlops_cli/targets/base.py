"""The seam between commands and where the platform runs.

`up`, `down`, `status`, `deploy` and `predict` are written once against `Target`; `local`,
`kubernetes` and `eks` implement it. Options a target does not support are rejected by that target
with a clear message rather than silently ignored. This module is the interface only: it imports no
target; `get_target` in the package's `__init__` chooses one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol

from ..common.check import Check
from ..common.progress import Reporter


@dataclass(frozen=True)
class UpOptions:
    dry_run: bool = False      # kubernetes: print the plan, write nothing
    preview: bool = False      # eks: stop after the Pulumi preview
    yes: bool = False          # skip confirmations
    with_prometheus: bool = False  # local: also start Prometheus
    reuse_existing: bool = False   # kubernetes: use components someone else installed (left as they are)


@dataclass(frozen=True)
class DownOptions:
    purge: bool = False        # also delete data (runs, registry, CRDs, volumes)
    yes: bool = False
    delete_data: bool = False  # eks: delete the bucket even if it holds data


@dataclass(frozen=True)
class DeployOptions:
    version: str | None = None
    alias: str | None = None
    canary: int | None = None
    promote: bool = False
    rollback: bool = False
    # With rollback: only drop a running canary, never go back a version (the loop's crash path: a crash
    # before the split must leave serving as it was). Honoured by the local target.
    canary_only: bool = False


@dataclass
class ComponentStatus:
    component: str
    url: str = ""
    pid: int | None = None
    healthy: bool = False
    version: str = ""
    uptime_s: float | None = None
    detail: str = ""
    # Self-healing (local): what the supervisor did to keep it up.
    state: str = ""                      # starting | running | backoff | failed | stopped
    restarts: int | None = None
    last_exit: str = ""                  # e.g. "terminated by SIGKILL", "exit status 1"
    last_exit_code: int | None = None    # negative: the signal number
    last_restart_at: float | None = None
    log_tail: str = ""                   # the last lines of its log, once it is marked failed
    # Should it be running? False for what was never installed or deployed: `mlops status` exits 1 only
    # when a component that should run is not healthy.
    expected: bool = True
    # The gateway on the local target: {model version: percent of requests} (two while a canary runs).
    traffic: dict[str, int] | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class StepResult:
    """One line of what `up`/`down`/`deploy` did: a component, an object or a resource."""

    name: str
    action: str  # e.g. started, already-running, create, update, unchanged, deleted
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Outcome:
    steps: list[StepResult] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"steps": [s.as_dict() for s in self.steps], **self.info}


class Confirm(Protocol):
    def __call__(self, question: str, *, expect: str | None = None) -> bool: ...


class Target(Protocol):
    name: str

    def up(self, options: UpOptions, reporter: Reporter, confirm: Confirm) -> Outcome: ...

    def down(self, options: DownOptions, reporter: Reporter, confirm: Confirm) -> Outcome: ...

    def status(self) -> list[ComponentStatus]: ...

    def deploy(self, options: DeployOptions, reporter: Reporter) -> Outcome: ...

    def predict(self, texts: list[str]) -> list[dict[str, Any]]: ...

    def logs(self, component: str, *, follow: bool = False, lines: int = 50) -> Iterator[str]: ...

    def checks(self) -> list[Check]:
        """Preflight checks this target needs, shown by `mlops doctor` after the core's."""
        ...

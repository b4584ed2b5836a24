"""`mlops loop`: one pass of triggers -> retrain -> gate -> register challenger -> canary -> promote/roll back.

Safety, by construction:
- **one at a time**: an exclusive, non-blocking `flock` on `<state_dir>/loop/loop.lock` (released by the
  kernel when the process dies, so a crashed loop never blocks the next);
- **the champion alias moves only on promotion**: the gate and the canary must both pass; a refused gate
  registers nothing, a rolled-back canary leaves the challenger under [loop].challenger_alias only;
- **a crash leaves serving as it was**: a failure while a canary is out rolls it back (the target's own
  rollback) before the error goes on; nothing else a pass does touches serving. The next pass starts clean;
- **one record**: every step's decision and evidence in `<state_dir>/loop/<time>.json` (and `latest.json`),
  written even when a step fails, and on the challenger's MLflow run (`loop/loop.json`).

The steps are a `Steps` value so that tests can replace one (the canary needs Prometheus: in a cluster, or
locally `mlops up --with-prometheus`).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from ..common.atomic_file import write_atomically
from ..common.errors import MlopsError, UsageError
from ..common.progress import SILENT, Reporter
from ..config.settings import Config
from . import steps as default_steps


@dataclass
class Steps:
    triggers: Callable[[Config, dict[str, Any] | None], dict[str, Any]] = default_steps.triggers
    retrain: Callable[[Config, Reporter], Any] = default_steps.retrain
    register: Callable[[Config, str], str] = default_steps.register
    canary: Callable[[Config, Any, str, Reporter], dict[str, Any]] = default_steps.canary
    promote: Callable[[Config, str], dict[str, Any]] = default_steps.promote
    rollback: Callable[[Config, Any, Reporter], Any] = default_steps.rollback
    log_record: Callable[[Config, str, dict[str, Any]], None] = default_steps.log_record


@dataclass
class _Record:
    dry_run: bool
    started_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    steps: list[dict[str, Any]] = field(default_factory=list)
    outcome: str = ""
    challenger_version: str | None = None
    challenger_run_id: str | None = None
    promoted: bool = False

    def add(self, step: str, decision: str, **evidence: Any) -> None:
        self.steps.append({"step": step, "decision": decision, "at": datetime.now(timezone.utc).isoformat(),
                           **evidence})

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def loop_dir(config: Config):
    return config.state_dir / "loop"


@contextmanager
def loop_lock(config: Config) -> Iterator[None]:
    directory = loop_dir(config)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "loop.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise MlopsError(f"another `mlops loop` is running (pid {holder}, lock {path})",
                             hint="wait for it to finish; two loops never run at once") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def latest_record(config: Config) -> dict[str, Any] | None:
    try:
        return json.loads((loop_dir(config) / "latest.json").read_text())
    except (OSError, ValueError):
        return None


def run_once(config: Config, target: Any, *, dry_run: bool = False, reporter: Reporter = SILENT,
             steps: Steps | None = None) -> dict[str, Any]:
    steps = steps or Steps()
    with loop_lock(config):
        record = _Record(dry_run)
        try:
            _pass(config, target, record, dry_run, reporter, steps)
        except BaseException as exc:
            record.outcome = f"failed at {record.steps[-1]['step'] if record.steps else 'start'}: {exc}"
            record.add("error", str(exc), error=type(exc).__name__)
            raise
        finally:
            _save(config, record, steps)
        return record.as_dict()


def _pass(config: Config, target: Any, record: _Record, dry_run: bool, reporter: Reporter, steps: Steps) -> None:
    found = steps.triggers(config, latest_record(config))
    record.add("triggers", found["decision"], **found["evidence"])
    if not found["retrain"]:
        record.outcome = f"nothing to do: {found['decision']}"
        return
    if dry_run:
        record.outcome = (f"would retrain on {found['evidence']['labels']} labels, gate, register as "
                          f"'{config.loop.challenger_alias}', canary {config.loop.canary_percent}% for "
                          f"{config.loop.observe}, then promote or roll back")
        return
    retrained = steps.retrain(config, reporter)
    record.challenger_run_id = retrained.run_id
    gate = retrained.gate
    record.add("retrain", f"challenger trained on data version {retrained.data.get('md5')}",
               data=retrained.data, recipe=retrained.recipe, evaluation=retrained.evaluation)
    record.add("gate", "passed" if gate["passed"] else "refused: " + "; ".join(gate["reasons"]), **gate)
    if not gate["passed"]:
        record.outcome = "gate refused the challenger: nothing registered, serving and the champion unchanged"
        return
    version = steps.register(config, retrained.run_id)
    record.challenger_version = version
    record.add("register", f"version {version} registered as '{config.loop.challenger_alias}'", version=version)
    judged = _canary(config, target, version, record, reporter, steps)
    if judged.get("action") != "promoted":
        record.outcome = (f"canary of version {version} {judged.get('action', 'not run')}: "
                          "serving and the champion unchanged")
        return
    promoted = steps.promote(config, version)
    record.promoted = True
    record.add("promote", f"'{config.registry.champion_alias}' moved to version {version}", **promoted)
    record.outcome = f"version {version} promoted: serving it, champion alias moved"


def _canary(config: Config, target: Any, version: str, record: _Record, reporter: Reporter,
            steps: Steps) -> dict[str, Any]:
    try:
        judged = steps.canary(config, target, version, reporter)
    except UsageError as exc:  # refused before anything was deployed (e.g. another canary is out)
        record.add("canary", f"not run: {exc.message}", action="not run")
        return {"action": "not run"}
    except MlopsError as exc:  # judged unhealthy and rolled back by the watch itself
        record.add("canary", f"rolled back: {exc.message}", action="rolled back")
        return {"action": "rolled back"}
    except BaseException as exc:  # a crash with the canary out: put serving back before anything else
        try:
            steps.rollback(config, target, reporter)
            undone = "rolled back"
        except Exception as again:
            undone = f"rollback failed too ({again}): run `mlops deploy --rollback`"
        record.add("canary", f"crashed ({type(exc).__name__}: {exc}); {undone}", action="crashed")
        raise
    # The judge's own "decision" (promote/rollback) is kept as "verdict": the step's decision is what was done.
    evidence = {("verdict" if k == "decision" else k): v for k, v in judged.items()}
    record.add("canary", judged.get("action", "none"), **evidence)
    return judged


def _save(config: Config, record: _Record, steps: Steps) -> None:
    if record.challenger_run_id:
        try:
            steps.log_record(config, record.challenger_run_id, record.as_dict())
        except Exception as exc:  # the local record stands; the run only mirrors it
            record.add("record", f"not logged to the challenger's MLflow run: {exc}")
    data = json.dumps(record.as_dict(), indent=2, default=str) + "\n"
    stamp = record.started_at.replace(":", "").replace("+0000", "Z")
    directory = loop_dir(config)
    write_atomically(directory / f"{stamp}.json", data)
    write_atomically(directory / "latest.json", data)


def run_loop(config: Config, target: Any, *, once: bool, dry_run: bool = False, reporter: Reporter = SILENT,
             steps: Steps | None = None, sleep: Callable[[float], None] = time.sleep,
             passes: int | None = None) -> list[dict[str, Any]]:
    """`--once` (or a dry run): one pass. Otherwise a pass every [loop].schedule, for ever (or `passes`)."""
    if once or dry_run:
        return [run_once(config, target, dry_run=dry_run, reporter=reporter, steps=steps)]
    if not config.loop.schedule:
        raise UsageError("`mlops loop` without --once runs every [loop].schedule, which is not set",
                         hint='set [loop].schedule = "1h" in mlops.toml, or run `mlops loop --once` from cron')
    from ..common.time_window import duration_seconds

    every = duration_seconds(config.loop.schedule)
    records: list[dict[str, Any]] = []
    while passes is None or len(records) < passes:
        started = time.monotonic()
        try:
            records.append(run_once(config, target, reporter=reporter, steps=steps))
        except MlopsError as exc:  # one failed pass (a server down, a busy lock) must not end the schedule
            reporter.warn(f"loop pass failed: {exc}")
            records.append({"outcome": f"failed: {exc}", "steps": []})
        sleep(max(0.0, every - (time.monotonic() - started)))
    return records

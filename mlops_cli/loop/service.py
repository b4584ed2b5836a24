"""The scheduled loop as a supervised service: a pass every [loop].schedule (loop/cycle.py), observable.

    python -m mlops_cli.loop.service --host 127.0.0.1 --port 8086

`mlops up` runs it on the local target when [loop].schedule is set (supervisord starts it, the healer restarts
it: the loop is "a supervised periodic job"). Routes: GET /healthz, /summary (the last pass's record and the
pass count), /metrics (`mlops_loop_passes_total{outcome}`, `mlops_loop_last_pass_timestamp_seconds`). A failed
pass is recorded and the schedule goes on; the lock keeps it from overlapping an `mlops loop --once`.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from typing import Any

from ..common.errors import MlopsError
from ..config.settings import Config

log = logging.getLogger("mlops.loop")


class LoopRunner:
    def __init__(self, config: Config, target: Any, sleep=time.sleep) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.config, self.target, self.sleep = config, target, sleep
        self.last: dict[str, Any] | None = None
        self.registry = CollectorRegistry()
        self.passes = Counter("mlops_loop_passes", "Loop passes, by outcome (promoted, unchanged, failed).",
                              ["outcome"], registry=self.registry)
        self.last_pass = Gauge("mlops_loop_last_pass_timestamp_seconds", "Unix time the last loop pass ended.",
                               registry=self.registry)

    def one_pass(self) -> None:
        from .cycle import run_once

        try:
            record = run_once(self.config, self.target)
            outcome = "promoted" if record.get("promoted") else "unchanged"
        except MlopsError as exc:
            record, outcome = {"outcome": f"failed: {exc}", "steps": []}, "failed"
        except Exception as exc:  # a crashed pass must not end the schedule; cycle.py recorded it
            log.exception("loop pass failed")
            record, outcome = {"outcome": f"failed: {type(exc).__name__}: {exc}", "steps": []}, "failed"
        self.last = record
        self.passes.labels(outcome=outcome).inc()
        self.last_pass.set(time.time())
        log.info("loop pass", extra={"outcome": record["outcome"]})

    def forever(self) -> None:
        from ..common.time_window import duration_seconds

        every = duration_seconds(self.config.loop.schedule)
        while True:
            started = time.monotonic()
            self.one_pass()
            self.sleep(max(0.0, every - (time.monotonic() - started)))


def create_app(runner: LoopRunner):
    from fastapi import FastAPI
    from fastapi.responses import Response
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    app = FastAPI(title="mlops loop", docs_url=None, redoc_url=None)

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "schedule": runner.config.loop.schedule}

    @app.get("/summary")
    async def summary():
        return {"schedule": runner.config.loop.schedule, "last": runner.last,
                "passes": {s.labels["outcome"]: s.value for m in runner.passes.collect() for s in m.samples
                           if s.name.endswith("_total")}}

    @app.get("/metrics")
    async def metrics():
        return Response(generate_latest(runner.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def main(argv: list[str] | None = None) -> None:
    from ..common.logging_setup import configure_json_logging
    from ..config.loading import load_config
    from ..targets import get_target

    parser = argparse.ArgumentParser(prog="python -m mlops_cli.loop.service", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("MLOPS_BIND_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("MLOPS_HTTP_PORT", "8086")))
    args = parser.parse_args(argv)
    config = load_config()
    configure_json_logging("loop", config.observability.log_level)
    if not config.loop.schedule:
        log.error("cannot start", extra={"error": "[loop].schedule is not set"})
        raise SystemExit(2)
    runner = LoopRunner(config, get_target(config))
    threading.Thread(target=runner.forever, name="loop", daemon=True).start()

    import uvicorn

    uvicorn.run(create_app(runner), host=args.host, port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()

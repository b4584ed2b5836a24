"""When to restart a local component, and when to give up on it.

Pure bookkeeping, no processes: the healer feeds it what supervisord and the health probes saw and
does what it says. The record it keeps per component is what `mlops status` shows.

    policy = RestartPolicy(backoff_s=0.5, backoff_max_s=30, max_restarts=5, window_s=300)
    health = ComponentHealth()
    policy.on_exit(health, now, "terminated by SIGKILL", -9, log_tail)   # -> schedules a restart
    policy.due(health, now + 1)                                          # -> True: start it now
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class RestartPolicy:
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    max_restarts: int = 5
    window_s: float = 300.0
    health_failures: int = 3

    def delay(self, recent_restarts: int) -> float:
        """Exponential: backoff_s, 2x, 4x ... per restart still inside the window, capped."""
        return min(self.backoff_max_s, self.backoff_s * (2 ** recent_restarts))

    def on_exit(self, health: "ComponentHealth", now: float, reason: str, exit_code: int | None, log_tail: str) -> None:
        health.last_exit = reason
        health.last_exit_code = exit_code
        health.last_exit_at = now
        health.health_failures = 0
        recent = [t for t in health.restart_times if now - t < self.window_s]
        health.restart_times = recent
        if len(recent) >= self.max_restarts:
            health.state = "failed"
            health.next_start_at = None
            health.failed_reason = (f"{len(recent)} restarts within {self.window_s:g} s; last: {reason}")
            health.log_tail = log_tail
            return
        health.state = "backoff"
        health.next_start_at = now + self.delay(len(recent))

    def on_probe(self, health: "ComponentHealth", ok: bool) -> bool:
        """Record one health probe; True when the component should be restarted for failing them."""
        if ok:
            health.health_failures = 0
            health.seen_healthy = True
            health.state = "running"
            return False
        if not health.seen_healthy:
            return False  # still starting: start-up time is the deployer's timeout, not ours
        health.health_failures += 1
        return health.health_failures >= self.health_failures

    def on_running(self, health: "ComponentHealth", process: str) -> None:
        """supervisord runs `process` (its pid and start time). One not seen before is starting, whoever
        started it: the healer, `mlops up`, or a new supervisord under a health file from before (whose
        "healthy" was about the old process, so refused probes while it starts must not count)."""
        if process == health.seen_process:
            return
        health.seen_process = process
        if health.state == "failed":  # started again by hand (`mlops up`): a fresh crash-loop budget
            health.restart_times, health.failed_reason, health.log_tail = [], "", ""
        health.state, health.seen_healthy, health.health_failures = "starting", False, 0

    def due(self, health: "ComponentHealth", now: float) -> bool:
        return health.state == "backoff" and health.next_start_at is not None and now >= health.next_start_at

    def on_restart(self, health: "ComponentHealth", now: float) -> None:
        health.restarts += 1
        health.last_restart_at = now
        health.restart_times = [*health.restart_times, now]
        health.next_start_at = None
        health.seen_healthy = False
        health.state = "starting"


@dataclass
class ComponentHealth:
    state: str = "starting"  # starting | running | backoff | failed
    restarts: int = 0
    last_exit: str = ""
    last_exit_code: int | None = None
    last_exit_at: float | None = None
    last_restart_at: float | None = None
    restart_times: list[float] = field(default_factory=list)
    next_start_at: float | None = None
    health_failures: int = 0
    seen_healthy: bool = False
    failed_reason: str = ""
    log_tail: str = ""
    seen_exit: str = ""  # supervisord's "start:stop" of the exit we last accounted for
    seen_process: str = ""  # supervisord's "pid@start" of the running process we last saw

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ComponentHealth":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

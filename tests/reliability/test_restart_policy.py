"""The healer's restart policy: exponential backoff, a crash loop ends as `failed`, health failures count."""

from __future__ import annotations

from mlops_cli.platform.restart_policy import ComponentHealth, RestartPolicy

POLICY = RestartPolicy(backoff_s=0.5, backoff_max_s=4.0, max_restarts=4, window_s=60.0, health_failures=3)


def test_backoff_doubles_per_recent_restart_up_to_the_ceiling():
    assert [POLICY.delay(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_crash_loop_is_restarted_with_growing_delays_then_marked_failed():
    health, now, delays = ComponentHealth(), 1000.0, []
    for _ in range(POLICY.max_restarts):
        POLICY.on_exit(health, now, "exit status 1", 1, "Traceback: boom")
        assert health.state == "backoff"
        delays.append(health.next_start_at - now)
        assert not POLICY.due(health, now)
        now = health.next_start_at
        assert POLICY.due(health, now)
        POLICY.on_restart(health, now)
    assert delays == [0.5, 1.0, 2.0, 4.0]
    POLICY.on_exit(health, now, "exit status 1", 1, "Traceback: boom")
    assert health.state == "failed" and not POLICY.due(health, now + 3600)
    assert "4 restarts within 60 s" in health.failed_reason and health.log_tail == "Traceback: boom"
    assert health.restarts == 4 and health.last_exit_code == 1


def test_restarts_outside_the_window_do_not_count_towards_failed():
    health = ComponentHealth()
    now = 0.0
    for _ in range(10):  # one crash every two minutes: never a crash loop
        POLICY.on_exit(health, now, "terminated by SIGKILL", -9, "")
        assert health.state == "backoff" and health.next_start_at - now == 0.5
        POLICY.on_restart(health, now + 0.5)
        now += 120.0
    assert health.restarts == 10


def test_failed_probes_restart_only_after_the_threshold_and_only_once_healthy():
    health = ComponentHealth()
    assert POLICY.on_probe(health, False) is False  # still starting: not counted
    assert health.health_failures == 0
    assert POLICY.on_probe(health, True) is False and health.state == "running"
    assert [POLICY.on_probe(health, False) for _ in range(3)] == [False, False, True]
    POLICY.on_probe(health, True)
    assert health.health_failures == 0


def test_a_process_the_healer_did_not_start_is_starting_until_healthy():
    """A new supervisord (after a reboot or a kill) runs new processes under a health file that says
    "healthy" about the old ones: their refused probes while they start must not get them restarted."""
    health = ComponentHealth()
    POLICY.on_running(health, "100@1000")
    assert POLICY.on_probe(health, True) is False and health.state == "running"
    health.health_failures = 2  # as read back from the file: two failed probes before the old one died
    POLICY.on_running(health, "200@1050")
    assert health.state == "starting" and health.health_failures == 0
    assert [POLICY.on_probe(health, False) for _ in range(5)] == [False] * 5
    POLICY.on_probe(health, True)
    POLICY.on_running(health, "200@1050")  # the same process on the next tick: nothing new
    assert health.state == "running" and health.seen_healthy
    assert [POLICY.on_probe(health, False) for _ in range(3)] == [False, False, True]


def test_up_starting_a_failed_component_again_gives_it_a_fresh_budget():
    """Without it, the first crash after `mlops up` revived a failed component marked it failed again at
    once, with no restart: its crash loop's restarts were still inside the window."""
    health, now = ComponentHealth(), 1000.0
    for _ in range(POLICY.max_restarts):
        POLICY.on_exit(health, now, "exit status 1", 1, "boom")
        POLICY.on_restart(health, now)
    POLICY.on_exit(health, now, "exit status 1", 1, "boom")
    assert health.state == "failed"
    POLICY.on_running(health, "300@1200")  # `mlops up` started it
    assert health.state == "starting" and not health.seen_healthy and health.failed_reason == ""
    POLICY.on_exit(health, now + 10, "terminated by SIGKILL", -9, "")
    assert health.state == "backoff" and health.restarts == POLICY.max_restarts  # the total stays counted


def test_the_healer_stops_quietly_when_supervisord_shuts_down(project):
    """D36: every `mlops down` left "healer tick failed ... SHUTDOWN_STATE" tracebacks in healer.log:
    supervisord refuses every XML-RPC call while it stops its programs (supervisor/rpcinterface.py,
    `_update` raises Faults.SHUTDOWN_STATE), and it stops the healer after the components it sorts later.

    A real supervisord with the real healer beside a component that takes 3 s to stop (it ignores
    SIGTERM until supervisord's stopwaitsecs sends SIGKILL): the healer ticks through that shutdown."""
    import sys
    import time

    from mlops_cli.platform.supervisor import HEALER, Program, Supervisor

    state, logs = project / ".mlops", project / ".mlops" / "logs"
    sup = Supervisor(state, logs)
    healer_log = logs / "healer.log"
    sup.write_program(Program(HEALER, [sys.executable, "-m", "mlops_cli.services.healer"], healer_log, project,
                              stop_timeout_s=5.0, autorestart=True))
    slow = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    sup.write_program(Program("slow", [sys.executable, "-c", slow], logs / "slow.log", project, stop_timeout_s=3.0))
    sup.start({"MLOPS_CONFIG": str(project / "mlops.toml")})
    try:
        deadline = time.monotonic() + 60
        while "healer started" not in (healer_log.read_text() if healer_log.exists() else ""):
            assert time.monotonic() < deadline, healer_log.read_text() if healer_log.exists() else "no healer log"
            time.sleep(0.2)
        time.sleep(1.0)  # a few ticks while supervisord runs
    finally:
        assert sup.shutdown(30)
    text = healer_log.read_text()
    assert "Traceback" not in text and "healer tick failed" not in text, text
    assert "supervisord is shutting down" in text

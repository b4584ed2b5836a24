"""Canary analysis: promote or roll back from Prometheus answers (healthy, error spike, latency spike, no data).

The answers in fixtures/canary/ were recorded from a real Prometheus scraping the gateway's metric
families while traffic was played into them (fixtures/canary/record_answers.py).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from mlops_cli.common.errors import MlopsError
from mlops_cli.monitoring.canary_analysis import CanaryThresholds, PrometheusAnswerError, canary_queries, decide, scalar
from mlops_cli.monitoring.canary_watch import observe_canary

from .support import QuietHandler, http_server

ANSWERS = Path(__file__).parent / "fixtures" / "canary"
THRESHOLDS = CanaryThresholds(max_error_rate=0.01, max_p99_s=1.0, min_requests=50)


def answers(name: str) -> dict:
    return json.loads((ANSWERS / f"{name}.json").read_text())


def value(name: str, key: str) -> float:
    return float(answers(name)[key]["data"]["result"][0]["value"][1])


def test_healthy_canary_is_promoted():
    verdict = decide(answers("healthy"), THRESHOLDS)
    assert verdict.promote and verdict.decision == "promote"
    assert verdict.error_rate == pytest.approx(value("healthy", "errors") / value("healthy", "requests"))
    assert 0 < verdict.error_rate < 0.01
    assert verdict.p99_s == pytest.approx(value("healthy", "p99")) and verdict.p99_s < 1.0
    assert verdict.reasons == ()


def test_error_spike_rolls_back_and_says_why():
    verdict = decide(answers("error_spike"), THRESHOLDS)
    assert not verdict.promote and verdict.decision == "rollback"
    assert verdict.error_rate == pytest.approx(value("error_spike", "errors") / value("error_spike", "requests"))
    assert any(r.startswith(f"error rate {verdict.error_rate:.2%} above 1.00%") for r in verdict.reasons)


def test_latency_spike_rolls_back_and_says_why():
    verdict = decide(answers("latency_spike"), THRESHOLDS)
    assert not verdict.promote
    assert any(r == f"p99 latency {value('latency_spike', 'p99') * 1000:.0f} ms above 1000 ms" for r in verdict.reasons)
    # no request failed, so Prometheus has no 5xx series at all: an empty answer, read as zero errors
    assert answers("latency_spike")["errors"]["data"]["result"] == []
    assert verdict.error_rate == 0 and not any("error rate" in r for r in verdict.reasons)


@pytest.mark.parametrize("name", ["no_data", "idle"])
def test_no_evidence_is_a_rollback_never_a_promotion(name):
    verdict = decide(answers(name), THRESHOLDS)
    assert not verdict.promote
    assert verdict.error_rate is None and verdict.p99_s is None
    assert any("not enough evidence" in r for r in verdict.reasons)


def test_thresholds_come_from_the_caller_not_the_module():
    lenient = CanaryThresholds(max_error_rate=0.25, max_p99_s=10.0, min_requests=50)
    assert decide(answers("error_spike"), lenient).promote
    assert decide(answers("latency_spike"), lenient).promote
    strict = CanaryThresholds(max_error_rate=0.01, max_p99_s=0.1, min_requests=50)
    assert not decide(answers("healthy"), strict).promote


def test_canary_that_got_no_traffic_is_not_promoted():
    data = answers("healthy")
    data["canary_predictions"] = {"status": "success", "data": {"resultType": "vector", "result": []}}
    verdict = decide(data, THRESHOLDS)
    assert not verdict.promote
    assert any("served no predictions" in r for r in verdict.reasons)


def test_prometheus_error_answers_are_refused_not_read_as_zero():
    bad = {"status": "error", "errorType": "bad_data", "error": "invalid parameter \"query\": 1:5: parse error"}
    with pytest.raises(PrometheusAnswerError, match="parse error"):
        scalar(bad)
    with pytest.raises(PrometheusAnswerError, match="one series"):
        scalar({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"a": "1"}, "value": [1, "1"]}, {"metric": {"a": "2"}, "value": [1, "2"]}]}})
    with pytest.raises(PrometheusAnswerError, match="matrix"):
        scalar({"status": "success", "data": {"resultType": "matrix", "result": []}})
    assert scalar({"status": "success", "data": {"resultType": "scalar", "result": [1, "0.5"]}}) == 0.5


def test_queries_use_the_gateway_metrics_and_the_window():
    queries = canary_queries(600, '4"x')
    assert set(queries) == {"requests", "errors", "p99", "canary_predictions"}
    assert "mlops_gateway_requests_total" in queries["requests"] and "[600s]" in queries["requests"]
    assert 'status=~"5.."' in queries["errors"]
    assert queries["p99"].startswith("histogram_quantile(0.99,") and "mlops_gateway_request_duration_seconds_bucket" in queries["p99"]
    assert 'model_version="4\\"x"' in queries["canary_predictions"]  # label value escaped


def test_the_queried_metrics_are_the_ones_the_gateway_exports():
    from mlops_cli.services.gateway_metrics import GatewayMetrics

    exported = {m.name for m in GatewayMetrics("sentiment").registry.collect()}
    for promql in canary_queries(60, "1").values():
        names = {n for n in ("mlops_gateway_requests", "mlops_gateway_request_duration_seconds", "mlops_predictions") if n in promql}
        assert names and names <= exported


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _scripted(*scenarios: str):
    """A Prometheus that answers each poll from the next scenario (the last one repeats)."""
    polls: list[list[str]] = []

    def query(promql: str) -> dict:
        name = next(k for k, q in canary_queries(1, "7").items() if q.split("[")[0] == promql.split("[")[0])
        if name == "requests":
            polls.append([])
        polls[-1].append(promql)
        scenario = scenarios[min(len(polls), len(scenarios)) - 1]
        return answers(scenario)[name]

    return query, polls


def test_watch_promotes_only_after_the_whole_window():
    clock = FakeClock()
    query, polls = _scripted("healthy")
    verdict = observe_canary(query, canary_version="7", window_s=600, interval_s=30, thresholds=THRESHOLDS,
                             clock=clock, sleep=clock.sleep)
    assert verdict.promote
    assert clock.now == 600 and len(polls) == 21
    assert "[600s]" in polls[-1][0]  # the final verdict covers the whole window


def test_watch_rolls_back_early_on_a_clear_breach():
    clock = FakeClock()
    query, polls = _scripted("healthy", "healthy", "error_spike")
    verdict = observe_canary(query, canary_version="7", window_s=600, interval_s=30, thresholds=THRESHOLDS,
                             clock=clock, sleep=clock.sleep)
    assert not verdict.promote and len(polls) == 3 and clock.now == 60


def test_watch_turns_a_prometheus_error_into_one_message():
    clock = FakeClock()

    def query(promql: str) -> dict:
        return {"status": "error", "errorType": "timeout", "error": "query timed out in expression evaluation"}

    with pytest.raises(MlopsError, match="timed out"):
        observe_canary(query, canary_version="7", window_s=60, interval_s=30, thresholds=THRESHOLDS,
                       clock=clock, sleep=clock.sleep)


# ------------------------------------------------- `mlops deploy --canary N --observe W --promote-if-healthy`


class RecordedPrometheus:
    """A Prometheus HTTP API on loopback answering /api/v1/query from a recorded scenario; 400 on anything else."""

    def __init__(self, scenario: str) -> None:
        from urllib.parse import parse_qs, urlparse

        recorded = answers(scenario)
        names = {q.split("[")[0]: name for name, q in canary_queries(1, "2").items()}
        self.queries: list[str] = []
        outer = self

        class Handler(QuietHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                url = urlparse(self.path)
                promql = parse_qs(url.query).get("query", [""])[0]
                name = names.get(promql.split("[")[0])
                outer.queries.append(promql)
                if url.path != "/api/v1/query" or name is None:
                    self.send_json(400, {"status": "error", "errorType": "bad_data", "error": f"unexpected query {promql!r}"})
                else:
                    self.send_json(200, recorded[name])

        self._serving = contextlib.ExitStack()
        self.url = self._serving.enter_context(http_server(Handler))

    def close(self) -> None:
        self._serving.close()


class CanaryTarget:
    """Stands in for a cluster target: keeps the canary state the way the KServe target does."""

    name = "fake"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.canary: int | None = None

    def deploy(self, options, reporter):
        from mlops_cli.targets import Outcome

        if options.promote or options.rollback:
            if self.canary is None:
                raise MlopsError("there is no canary to promote" if options.promote else "nothing to roll back to")
            self.canary = None
        else:
            self.canary = options.canary
        self.calls.append("promote" if options.promote else "rollback" if options.rollback else f"canary {options.canary}")
        return Outcome(info={"model_version": "2"})


@pytest.fixture
def canary_cli(cli, project, monkeypatch):
    import mlops_cli.targets as targets

    target = CanaryTarget()
    monkeypatch.setattr(targets, "get_target", lambda config, name=None: target)
    servers: list[RecordedPrometheus] = []

    def run(scenario: str, *args: str):
        prom = RecordedPrometheus(scenario)
        servers.append(prom)
        monkeypatch.setenv("MLOPS_CANARY__PROMETHEUS_URL", prom.url)
        monkeypatch.setenv("MLOPS_CANARY__INTERVAL_S", "0.2")
        return cli("--json", "deploy", "--version", "2", "--canary", "20", "--observe", "1s", *args), target, prom

    yield run
    for prom in servers:
        prom.close()


def test_deploy_promotes_a_healthy_canary(canary_cli):
    result, target, prom = canary_cli("healthy", "--promote-if-healthy")
    assert result.exit_code == 0, result.stderr
    assert target.calls == ["canary 20", "promote"]
    assert json.loads(result.stdout)["canary"]["decision"] == "promote"
    assert any('model_version="2"' in q for q in prom.queries)


@pytest.mark.parametrize("scenario, why", [("error_spike", "error rate"), ("latency_spike", "p99 latency"),
                                           ("no_data", "not enough evidence")])
def test_deploy_rolls_back_an_unhealthy_canary_and_exits_1(canary_cli, scenario, why):
    result, target, _ = canary_cli(scenario, "--promote-if-healthy")
    assert result.exit_code == 1
    assert target.calls == ["canary 20", "rollback"]
    assert "rolled back" in result.stderr and why in result.stderr


def test_observe_alone_reports_and_acts_on_nothing(canary_cli):
    result, target, _ = canary_cli("healthy")
    assert result.exit_code == 0 and target.calls == ["canary 20"]
    result, target, _ = canary_cli("error_spike")
    assert result.exit_code == 1 and "mlops deploy --rollback" in result.stderr


def test_unreachable_prometheus_rolls_the_canary_back(canary_cli, monkeypatch):
    from .support import free_port

    import mlops_cli.monitoring.canary_watch as watch

    monkeypatch.setattr(watch, "prometheus_url", lambda config: f"http://127.0.0.1:{free_port()}")
    result, target, _ = canary_cli("healthy", "--promote-if-healthy")
    assert result.exit_code == 1 and "cannot reach Prometheus" in result.stderr and "rolled back" in result.stderr
    assert target.calls == ["canary 20", "rollback"]

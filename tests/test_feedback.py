"""Labelled feedback (issue 25, part 1): POST /feedback on the gateway and `mlops feedback import`.

Labels are checked against the prediction log, the model's classes and what is already labelled; a bad
batch stores nothing and names every bad item; an acknowledged label is on disk (fsync) and survives
`kill -9` of the gateway in the middle of a burst (a real gateway process, killed for real).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from mlops_cli.config.loading import load_config
from mlops_cli.services.gateway import GatewaySettings, create_app
from mlops_cli.services.gateway_auth import BasicAuth

from .support import QuietHandler, free_port, http_server, wait_http

AUTH = ("admin", "s3cret-pass")


def prediction_line(rid: str, version: str = "1", label: str = "Positive", text: str | None = None,
                    ts: datetime | None = None) -> str:
    """A prediction-log line as the gateway writes it (services/prediction_log.py _line)."""
    entry = {"ts": (ts or datetime.now(timezone.utc)).isoformat(), "request_id": rid, "model_version": version,
             "label": label, "confidence": 0.8, "text_length": 20, "word_count": 4, "oov_share": 0.0}
    if text is not None:
        entry["text"] = text
    return json.dumps(entry) + "\n"


def write_predictions(project: Path, lines: list[str]) -> Path:
    path = project / ".mlops" / "predictions.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))
    return path


def stored(project: Path) -> list[dict]:
    path = project / ".mlops" / "feedback.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def gateway(project):
    (project / "mlops.toml").write_text("[gateway]\nmax_batch = 4\n")
    write_predictions(project, [prediction_line("r1"), prediction_line("r2", label="Negative"),
                                prediction_line("r3", version="2"),
                                prediction_line("b1"), prediction_line("b1", label="Negative")])  # a batch of two
    settings = GatewaySettings(load_config(), f"http://127.0.0.1:{free_port()}", "1", BasicAuth({AUTH[0]: AUTH[1]}))
    with TestClient(create_app(settings)) as client:
        yield client


def test_one_label_is_stored_with_its_prediction(gateway, project):
    response = gateway.post("/feedback", json={"request_id": "r2", "label": "positive"}, auth=AUTH)
    assert response.status_code == 200, response.text
    assert response.json() == {"stored": 1}
    [record] = stored(project)
    assert record | {"ts": None} == {"ts": None, "key": "r:r2#0", "request_id": "r2", "index": 0, "label": "Positive",
                                     "model_version": "1", "predicted": "Negative", "source": "gateway"}


def test_feedback_needs_the_predict_credential(gateway, project):
    assert gateway.post("/feedback", json={"request_id": "r1", "label": "Positive"}).status_code == 401
    assert gateway.post("/feedback", json={"request_id": "r1", "label": "Positive"},
                        auth=("admin", "wrong")).status_code == 401
    assert stored(project) == []


@pytest.mark.parametrize("body, status, code", [
    ({"request_id": "nope", "label": "Positive"}, 404, "unknown_request_id"),
    ({"request_id": "r1", "label": "Neutral"}, 422, "unknown_label"),     # binary model: no Neutral
    ({"request_id": "r1", "label": 1.5}, 422, "unknown_label"),
    ({"request_id": "r1"}, 422, "unknown_label"),
    ({"request_id": "", "label": "Positive"}, 422, "invalid_input"),
    ({"request_id": "x" * 201, "label": "Positive"}, 422, "invalid_input"),
    ({"label": "Positive"}, 422, "invalid_input"),
    (["r1", "Positive"], 422, "invalid_input"),
    ({"request_id": "b1", "label": "Positive"}, 422, "index_required"),    # a batch request names its text
    ({"request_id": "b1", "index": 2, "label": "Positive"}, 422, "invalid_input"),
    ({"request_id": "b1", "index": True, "label": "Positive"}, 422, "invalid_input"),
    ({"feedback": []}, 422, "invalid_input"),
    ({"feedback": [{"request_id": "r1", "label": "Positive"}] * 5}, 413, "batch_too_large"),
])
def test_bad_feedback_is_refused_and_nothing_is_stored(gateway, project, body, status, code):
    response = gateway.post("/feedback", json=body, auth=AUTH)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert stored(project) == []


def test_non_utf8_invalid_json_and_huge_bodies_are_refused(gateway, project):
    assert gateway.post("/feedback", content=b'{"request_id": "r1", "label": "\xff"}', auth=AUTH,
                        headers={"Content-Type": "application/json"}).json()["error"]["code"] == "invalid_encoding"
    assert gateway.post("/feedback", content=b'{"request_id": ', auth=AUTH).status_code == 400
    huge = gateway.post("/feedback", content=json.dumps({"request_id": "r1", "label": "Positive",
                                                          "pad": "x" * 1_000_000}).encode(), auth=AUTH)
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "body_too_large"
    assert stored(project) == []


def test_a_duplicate_is_409_naming_the_stored_label(gateway, project):
    assert gateway.post("/feedback", json={"request_id": "r1", "label": "Negative"}, auth=AUTH).status_code == 200
    again = gateway.post("/feedback", json={"request_id": "r1", "label": "Positive"}, auth=AUTH)
    assert again.status_code == 409 and "already labelled (Negative)" in again.json()["error"]["message"]
    assert [r["label"] for r in stored(project)] == ["Negative"]


def test_a_batch_is_all_or_nothing_and_names_every_bad_item(gateway, project):
    batch = {"feedback": [{"request_id": "r1", "label": "Positive"}, {"request_id": "ghost", "label": "Positive"},
                          {"request_id": "r3", "label": "Meh"}, {"request_id": "r1", "label": "Negative"}]}
    response = gateway.post("/feedback", json=batch, auth=AUTH)
    assert response.status_code == 422, response.text   # the caller's own mistake ranks first
    error = response.json()["error"]
    assert [(i["item"], i["code"]) for i in error["items"]] == [(1, "unknown_request_id"), (2, "unknown_label"),
                                                                 (3, "duplicate")]
    assert "item 1" in error["message"] and "'ghost'" in error["message"]
    assert stored(project) == []
    good = {"feedback": [{"request_id": "r3", "label": "Negative"}, {"request_id": "b1", "index": 1, "label": "Neg"},
                         {"request_id": "b1", "index": 0, "label": "Positive"}]}
    assert gateway.post("/feedback", json=good, auth=AUTH).json() == {"stored": 3}
    assert [(r["key"], r["model_version"], r["label"]) for r in stored(project)] == [
        ("r:r3#0", "2", "Negative"), ("r:b1#1", "1", "Negative"), ("r:b1#0", "1", "Positive")]


class V1Predictor(QuietHandler):
    """A KServe V1 predictor for three classes: every text is 'Neutral'."""

    def do_GET(self) -> None:
        self.send_json(200, {"name": "sentiment", "ready": True})

    def do_POST(self) -> None:
        texts = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["instances"]
        self.send_json(200, {"predictions": [{"logits": [0.1, 2.0, 0.3], "labels": ["Negative", "Neutral", "Positive"],
                                              "model_version": "7", "text_length": len(t), "word_count": 1,
                                              "oov_share": 0.0} for t in texts]})


def test_a_prediction_just_answered_can_be_labelled_with_the_models_own_classes(project):
    """The log line is written by a writer thread a moment later: the gateway's own index must not wait for it.
    The model's classes come from the predictor (Neutral here), not from [data].classes (binary)."""
    (project / "mlops.toml").write_text("[gateway]\nlog_text = true\n[local]\npredictor_port = 1\n")
    with http_server(V1Predictor) as url:
        settings = GatewaySettings(load_config(), url, "7", BasicAuth({AUTH[0]: AUTH[1]}))
        with TestClient(create_app(settings)) as client:
            answer = client.post("/predict/batch", json={"texts": ["so-so", "fine"]}, auth=AUTH)
            rid = answer.headers["x-request-id"]
            response = client.post("/feedback", json={"request_id": rid, "index": 1, "label": "Neutral"}, auth=AUTH)
            assert response.status_code == 200, response.text
    [record] = stored(project)
    assert (record["model_version"], record["predicted"], record["label"], record["text"]) == ("7", "Neutral",
                                                                                               "Neutral", "fine")


# -- kill -9 during a burst --------------------------------------------------------------------------

def _start_gateway(project: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "MLOPS_GATEWAY_PASSWORD": AUTH[1], "MLOPS_GATEWAY__NICE": "0"}
    return subprocess.Popen([sys.executable, "-m", "mlops_cli.services.gateway", "--port", str(port)], cwd=project,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def test_kill_9_during_a_feedback_burst_loses_no_acknowledged_label(project):
    ids = [f"req-{n:05d}" for n in range(4000)]
    start = datetime.now(timezone.utc) - timedelta(minutes=5)
    write_predictions(project, [prediction_line(rid, ts=start) for rid in ids])
    port = free_port()
    gateway = _start_gateway(project, port)
    acknowledged: list[str] = []
    refused: list[int] = []
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", gateway)

        def burst(worker: int) -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=AUTH, timeout=5) as client:
                for rid in ids[worker::4]:
                    try:
                        response = client.post("/feedback", json={"request_id": rid, "label": "Negative"})
                    except httpx.HTTPError:
                        return  # the gateway is gone: nothing after this was acknowledged
                    if response.status_code == 200:
                        acknowledged.append(rid)
                    else:
                        refused.append(response.status_code)

        workers = [threading.Thread(target=burst, args=(w,)) for w in range(4)]
        for w in workers:
            w.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 150 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.killpg(gateway.pid, signal.SIGKILL)   # mid-burst: requests are in flight right now
        gateway.wait(10)
        for w in workers:
            w.join(30)
    finally:
        if gateway.poll() is None:
            os.killpg(gateway.pid, signal.SIGKILL)
    assert refused == []
    assert 150 <= len(acknowledged) < len(ids), len(acknowledged)  # killed during the burst, not after it
    on_disk = {r["request_id"] for r in stored_tolerant(project)}
    assert set(acknowledged) <= on_disk, sorted(set(acknowledged) - on_disk)[:5]

    # After a restart the stored labels still count: relabelling one is a duplicate, a new one is stored.
    port = free_port()
    gateway = _start_gateway(project, port)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", gateway)
        again = httpx.post(f"http://127.0.0.1:{port}/feedback", auth=AUTH,
                           json={"request_id": acknowledged[0], "label": "Positive"})
        assert again.status_code == 409, again.text
        fresh = next(rid for rid in ids if rid not in on_disk)
        assert httpx.post(f"http://127.0.0.1:{port}/feedback", auth=AUTH,
                          json={"request_id": fresh, "label": "Positive"}).status_code == 200
    finally:
        os.killpg(gateway.pid, signal.SIGTERM)
        gateway.wait(15)


def stored_tolerant(project: Path) -> list[dict]:
    """What a reader takes from the log: whole lines (a kill may leave a torn last line; none is expected)."""
    from mlops_cli.monitoring.feedback_log import FeedbackLog

    return FeedbackLog(project / ".mlops" / "feedback.jsonl").records()


# -- mlops feedback import ----------------------------------------------------------------------------

@pytest.fixture
def logged(project):
    (project / "mlops.toml").write_text('[project]\nname = "fb"\n[feedback]\nimport_max_bytes = 2000\n')
    write_predictions(project, [prediction_line(f"q{n}", label="Positive", text=f"review {n}") for n in range(5)])
    return project


def test_import_stores_request_id_and_text_rows(logged, cli):
    (logged / "labels.csv").write_text('request_id,index,label\nq0,,Negative\nq1,0,pos\n')
    result = cli("feedback", "import", "labels.csv", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["stored"] == 2
    (logged / "texts.csv").write_text('text,label\n"a fine, quiet film",Positive\nawful  side effects ,negative\n')
    assert cli("feedback", "import", "texts.csv").exit_code == 0
    records = stored(logged)
    assert [(r["request_id"], r["label"], r.get("text"), r["source"]) for r in records] == [
        ("q0", "Negative", "review 0", "import:labels.csv"), ("q1", "Positive", "review 1", "import:labels.csv"),
        (None, "Positive", "a fine, quiet film", "import:texts.csv"),
        (None, "Negative", "awful side effects", "import:texts.csv")]


def test_import_names_every_bad_row_and_stores_nothing(logged, cli):
    (logged / "labels.csv").write_text('request_id,text,label\nq0,,Negative\nghost,,Positive\nq1,,Meh\n'
                                       'q0,,Positive\n,,Positive\n,"fine",Positive\n,"fine",Negative\n')
    result = cli("feedback", "import", "labels.csv")
    assert result.exit_code == 2
    message = result.stderr
    for expected in ("row 2 (line 3): no logged prediction has request id 'ghost'", "row 3 (line 4): label 'Meh'",
                     "row 4 (line 5): prediction 'q0' is already labelled earlier in this file",
                     "row 5 (line 6): neither a request_id nor a text", "row 7 (line 8): this text is already"):
        assert expected in " ".join(message.split()), message
    assert "Traceback" not in message
    assert stored(logged) == []


def test_import_refuses_labels_already_stored(logged, cli):
    (logged / "a.csv").write_text("request_id,label\nq2,Negative\n")
    assert cli("feedback", "import", "a.csv").exit_code == 0
    (logged / "b.csv").write_text("request_id,label\nq3,Negative\nq2,Negative\n")
    result = cli("feedback", "import", "b.csv")
    assert result.exit_code == 2 and "already labelled (Negative)" in result.stderr
    assert [r["request_id"] for r in stored(logged)] == ["q2"]


@pytest.mark.parametrize("content, expected", [
    (b"request_id,label\nq0,Neg\xe9\n", "line 2 is not valid UTF-8"),
    (b"request_id,label\n" + b"q0,Negative\n" * 200, "more than [feedback].import_max_bytes (2000)"),
    (b"id,sentiment\nq0,Negative\n", "expected a label column and a request_id or text column"),
    (b"request_id,label\n", "no data rows"),
    (b'request_id,label\nq0,Negative,extra\n', "row 1 (line 2) has more cells than the header"),
])
def test_import_refuses_unreadable_files(logged, cli, content, expected):
    (logged / "bad.csv").write_bytes(content)
    result = cli("feedback", "import", "bad.csv")
    assert result.exit_code == 2 and expected in " ".join(result.stderr.split()), result.stderr
    assert stored(logged) == []
    assert cli("feedback", "import", "missing.csv").exit_code == 2


def test_predictions_another_gateway_replica_logged_after_start_can_be_labelled(gateway, project):
    """Replicas share one prediction log (one PVC in a cluster): a request id this gateway has not seen is
    looked up in what was appended since; its own predictions are not indexed twice from their log lines."""
    log = project / ".mlops" / "predictions.jsonl"
    with log.open("a") as fh:
        fh.write(prediction_line("other-replica", version="3", label="Negative"))
        fh.write(prediction_line("torn", version="3")[:30])          # still being written: not yet a line
    response = gateway.post("/feedback", json={"request_id": "other-replica", "label": "Negative"}, auth=AUTH)
    assert response.status_code == 200, response.text
    assert stored(project)[-1]["model_version"] == "3"
    assert gateway.post("/feedback", json={"request_id": "torn", "label": "Negative"}, auth=AUTH).status_code == 404
    log.rename(log.with_name("predictions.jsonl.1"))                  # rotated meanwhile
    log.write_text(prediction_line("after-rotation"))
    assert gateway.post("/feedback", json={"request_id": "after-rotation", "label": "Positive"},
                        auth=AUTH).status_code == 200


def test_an_own_prediction_is_not_indexed_twice_from_its_log_line(project):
    from mlops_cli.monitoring.feedback_check import PredictionIndex, Served

    log = write_predictions(project, [])
    index = PredictionIndex.from_log(lambda: [log], 10)
    index.add("mine", Served("1", "Positive"), own=True)
    log.write_text(prediction_line("mine") + prediction_line("theirs"))
    assert len(index.find("theirs")) == 1 and len(index.find("mine")) == 1

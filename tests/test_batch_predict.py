"""`mlops predict --file`: streamed scoring, input columns kept, long rows, `-o DIR`, flat memory."""

from __future__ import annotations

import csv
import json
import tracemalloc

import pytest

from mlops_cli.common.errors import DataError, MlopsError
from mlops_cli.platform.batch_predict import predict_file

from .support import QuietHandler, http_server

MAX_CHARS = 5000
MAX_BATCH = 64


class FakeGateway:
    """Refuses what the gateway's /predict/batch refuses (services/gateway.py): more than max_batch
    texts (413) and a text over max_chars (413, with the index within the batch)."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, texts: list[str]) -> list[dict]:
        if len(texts) > MAX_BATCH:
            raise MlopsError(f"gateway answered HTTP 413: {len(texts)} texts; at most {MAX_BATCH} per request")
        for i, t in enumerate(texts):
            if len(t) > MAX_CHARS:
                raise MlopsError(f"gateway answered HTTP 413: texts[{i}] has {len(t)} characters; at most {MAX_CHARS}")
        self.batches.append(len(texts))
        return [{"label": "Positive" if "good" in t else "Negative", "confidence": 0.9, "model_version": "7"}
                for t in texts]


def write_csv(path, header, rows):
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def read_csv(path):
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        return next(reader), list(reader)


def run(tmp_path, src, output=None, **kwargs):
    return predict_file(FakeGateway(), src, "text", output, MAX_BATCH, max_chars=MAX_CHARS, **kwargs)


def test_input_columns_named_like_ours_are_kept(tmp_path):
    src = write_csv(tmp_path / "in.csv", ["id", "text", "label", "confidence"],
                    [[1, "good stuff", "Negative", "gold"], [2, "bad stuff", "Positive", "silver"]])
    summary = run(tmp_path, src, tmp_path / "out.csv")
    header, rows = read_csv(tmp_path / "out.csv")
    assert len(header) == len(set(header)), header
    assert header == ["id", "text", "label", "confidence",
                      "predicted_label", "predicted_confidence", "predicted_model_version"]
    assert rows[0] == ["1", "good stuff", "Negative", "gold", "Positive", "0.9", "7"]  # the user's labels survive
    assert summary["columns"] == header[4:]


def test_prefixed_names_taken_too_get_numbered(tmp_path):
    src = write_csv(tmp_path / "in.csv", ["text", "label", "predicted_label"], [["good", "x", "y"]])
    run(tmp_path, src, tmp_path / "out.csv")
    header, rows = read_csv(tmp_path / "out.csv")
    assert header == ["text", "label", "predicted_label", "predicted_label_2", "predicted_confidence_2",
                      "predicted_model_version_2"]
    assert rows[0][:3] == ["good", "x", "y"]


def _file_with_long_row(tmp_path):
    rows = [[n, "good review" if n % 2 else "bad review"] for n in range(1, 101)]
    rows[63][1] = "good " * 1440  # row 64: 7200 characters
    return write_csv(tmp_path / "in.csv", ["n", "text"], rows)


def test_an_over_long_row_is_truncated_by_default_and_counted(tmp_path):
    summary = run(tmp_path, _file_with_long_row(tmp_path), tmp_path / "out.csv")
    header, rows = read_csv(tmp_path / "out.csv")
    assert summary["rows"] == 100 and summary["truncated"] == 1 and summary["long_rows"] == [64]
    assert len(rows) == 100 and all(r[header.index("label")] for r in rows)
    assert rows[63][header.index("label")] == "Positive"


def test_an_over_long_row_can_be_skipped(tmp_path):
    summary = run(tmp_path, _file_with_long_row(tmp_path), tmp_path / "out.csv", long_text="skip")
    header, rows = read_csv(tmp_path / "out.csv")
    assert summary["skipped"] == 1 and summary["long_rows"] == [64]
    assert len(rows) == 100 and rows[63][header.index("label")] == "" and rows[63][0] == "64"
    assert all(r[header.index("label")] for i, r in enumerate(rows) if i != 63)


def test_fail_mode_names_the_files_row_and_sends_nothing(tmp_path):
    gateway = FakeGateway()
    with pytest.raises(DataError, match=r"row 64 \(line 65\) has 7200 characters") as err:
        predict_file(gateway, _file_with_long_row(tmp_path), "text", tmp_path / "out.csv", MAX_BATCH,
                     max_chars=MAX_CHARS, long_text="fail")
    assert "long_text" in err.value.hint
    assert gateway.batches == [] and not (tmp_path / "out.csv").exists()


def test_output_directory_gets_the_default_name_and_no_stray_file(tmp_path):
    src = write_csv(tmp_path / "reviews.csv", ["text"], [["good"], ["bad"]])
    out_dir = tmp_path / "results"
    out_dir.mkdir()
    summary = run(tmp_path, src, out_dir)
    assert summary["output"] == str(out_dir / "reviews.scored.csv")
    assert sorted(p.name for p in out_dir.iterdir()) == ["reviews.scored.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results", "reviews.csv"]


def test_a_failure_midway_leaves_nothing_behind(tmp_path):
    src = write_csv(tmp_path / "reviews.csv", ["text"], [[f"good {i}"] for i in range(300)])

    def flaky(texts):
        if flaky.calls == 2:
            raise MlopsError("gateway answered HTTP 503: predictor unavailable")
        flaky.calls += 1
        return FakeGateway()(texts)

    flaky.calls = 0
    with pytest.raises(MlopsError, match=r"rows 129-192: gateway answered HTTP 503"):
        predict_file(flaky, src, "text", tmp_path / "out.csv", MAX_BATCH, max_chars=MAX_CHARS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reviews.csv"]


def _peak_bytes(tmp_path, n_rows, **kwargs):
    src = write_csv(tmp_path / f"in-{n_rows}.csv", ["id", "text"],
                    ([i, f"review number {i}: good enough, worked for my headaches"] for i in range(n_rows)))
    tracemalloc.start()
    try:
        predict_file(FakeGateway(), src, "text", tmp_path / f"out-{n_rows}.csv", MAX_BATCH,
                     **{"max_chars": MAX_CHARS, **kwargs})
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_number_of_rows(tmp_path):
    """Streaming: 50x the rows, about the same peak (the old reader held every row: ~0.8 KB each)."""
    small, large = _peak_bytes(tmp_path, 400), _peak_bytes(tmp_path, 20_000)
    assert large < small * 1.5 + 64_000, (small, large)


@pytest.mark.parametrize("long_text", ["truncate", "skip"])
def test_over_long_rows_are_counted_not_remembered(tmp_path, long_text):
    """Every row over max_chars: the summary counts them all and names the first 20, and the peak stays
    flat (a list of every long row's number grew ~36 bytes a row, a set for `skip` more)."""
    small = _peak_bytes(tmp_path, 400, max_chars=20, long_text=long_text)
    large = _peak_bytes(tmp_path, 20_000, max_chars=20, long_text=long_text)
    assert large < small * 1.5 + 64_000, (small, large)
    summary = predict_file(FakeGateway(), tmp_path / "in-400.csv", "text", tmp_path / "again.csv", MAX_BATCH,
                           max_chars=20, long_text=long_text)
    assert summary["long_rows"] == list(range(1, 21))
    assert (summary["skipped"], summary["truncated"]) == ((400, 0) if long_text == "skip" else (0, 400))


def test_a_shed_batch_is_sent_again_after_retry_after(tmp_path, monkeypatch):
    from mlops_cli.common.errors import GatewayOverloaded
    from mlops_cli.platform import batch_predict

    waits = []
    monkeypatch.setattr(batch_predict.time, "sleep", waits.append)
    src = write_csv(tmp_path / "reviews.csv", ["text"], [[f"good {i}"] for i in range(100)])
    gateway = FakeGateway()
    shed = {"left": 2}

    def busy(texts):
        if shed["left"]:
            shed["left"] -= 1
            raise GatewayOverloaded("gateway answered HTTP 503: over its latency budget", "3")
        return gateway(texts)

    summary = predict_file(busy, src, "text", tmp_path / "out.csv", MAX_BATCH, max_chars=MAX_CHARS)
    assert summary["rows"] == 100 and sum(gateway.batches) == 100 and waits == [3.0, 3.0]


@pytest.fixture
def admission_gateway():
    """Stands in for the gateway's /predict/batch on loopback (keep-alive as uvicorn, basic auth, at most
    MAX_BATCH texts, 413 beyond) that sheds its first requests as an admission limit does: 503 or 429
    with Retry-After, with or without a JSON body; `shed` lists the replies still to give."""
    import base64
    import json

    state = {"shed": [], "served": 0, "seen": 0, "connections": set()}

    class Handler(QuietHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            texts = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["texts"]
            state["seen"] += 1
            state["connections"].add(self.client_address)
            if self.headers.get("Authorization") != "Basic " + base64.b64encode(b"admin:pw").decode():
                self.send_json(401, {"error": {"code": "unauthorized", "message": "wrong credentials"}})
            elif len(texts) > MAX_BATCH:
                self.send_json(413, {"error": {"code": "too_large", "message": "too many texts"}})
            elif state["shed"]:
                status, retry_after, body = state["shed"].pop(0)
                self.send_json(status, body, {} if retry_after is None else {"Retry-After": retry_after})
            else:
                state["served"] += len(texts)
                self.send_json(200, {"predictions": [{"label": "Positive", "confidence": 0.9, "model_version": "1"}
                                                     for _ in texts]})

    with http_server(Handler) as url:
        state["port"] = int(url.rpartition(":")[2])
        yield state


def test_predict_file_retries_the_gateways_own_503_and_429_with_retry_after(cli, project, admission_gateway,
                                                                           monkeypatch):
    """What `mlops predict --file` does with a shed reply from the local target's HTTP path: waits as
    long as Retry-After says (seconds or an HTTP-date, RFC 9110 10.2.3), sends the batch again and
    scores the whole file; a 503 without Retry-After is a real failure and ends the run."""
    from datetime import datetime, timedelta, timezone
    from email.utils import format_datetime

    from mlops_cli.platform import batch_predict

    waits = []
    monkeypatch.setattr(batch_predict.time, "sleep", waits.append)
    monkeypatch.setenv("MLOPS_LOCAL__GATEWAY_PORT", str(admission_gateway["port"]))
    monkeypatch.setenv("MLOPS_GATEWAY__MAX_BATCH", str(MAX_BATCH))
    monkeypatch.setenv("MLOPS_GATEWAY_PASSWORD", "pw")
    src = write_csv(project / "reviews.csv", ["text"], [[f"good {i}"] for i in range(150)])
    in_a_minute = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=40), usegmt=True)
    admission_gateway["shed"] = [(503, "2", "Service Unavailable"),
                                 (429, in_a_minute, {"error": {"code": "overloaded", "message": "busy"}}),
                                 (503, "5", {"error": {"code": "overloaded", "message": "over budget"}})]

    result = cli("--json", "predict", "--file", str(src), "-o", str(project / "out.csv"))
    assert result.exit_code == 0, result.stderr
    assert admission_gateway["served"] == 150 and admission_gateway["seen"] == 3 + 3
    assert sorted(waits)[:2] == [2.0, 5.0] and 30 < sorted(waits)[2] <= 40, waits
    _, rows = read_csv(project / "out.csv")
    assert len(rows) == 150

    admission_gateway["shed"] = [(503, "", None)]  # unparseable Retry-After: still shed, retried after 1 s
    assert cli("predict", "--file", str(src), "-o", str(project / "out.csv")).exit_code == 0
    assert waits[-1] == 1.0

    admission_gateway["shed"] = [(503, None, {"error": {"code": "predictor_unavailable", "message": "down"}})]
    failed = cli("predict", "--file", str(src), "-o", str(project / "out2.csv"))
    assert failed.exit_code == 1 and "HTTP 503: down" in failed.stderr and not (project / "out2.csv").exists()
    admission_gateway["shed"] = [(500, "1", {"error": {"code": "internal", "message": "boom"}})]
    failed = cli("predict", "--file", str(src), "-o", str(project / "out2.csv"))
    assert failed.exit_code == 1 and "HTTP 500: boom" in failed.stderr and not (project / "out2.csv").exists()


def test_predict_file_keeps_its_connections_to_the_gateway(cli, project, admission_gateway, monkeypatch):
    """Keep-alive: a file of 10 batches reuses at most IN_FLIGHT connections (a client per request
    opened one per batch, and its CPU and memory grew with the file)."""
    from mlops_cli.platform.batch_predict import IN_FLIGHT

    monkeypatch.setenv("MLOPS_LOCAL__GATEWAY_PORT", str(admission_gateway["port"]))
    monkeypatch.setenv("MLOPS_GATEWAY__MAX_BATCH", str(MAX_BATCH))
    monkeypatch.setenv("MLOPS_GATEWAY_PASSWORD", "pw")
    src = write_csv(project / "reviews.csv", ["text"], [[f"good {i}"] for i in range(10 * MAX_BATCH)])
    assert cli("predict", "--file", str(src)).exit_code == 0
    assert admission_gateway["seen"] == 10 and 1 <= len(admission_gateway["connections"]) <= IN_FLIGHT


# -- issue 26: what a newcomer fed `predict --file` -------------------------------------------------

@pytest.fixture
def gateway(monkeypatch):
    """The local target's predict() answered by FakeGateway: the CLI path without a platform."""
    from mlops_cli.targets.local import LocalTarget

    fake = FakeGateway()
    monkeypatch.setattr(LocalTarget, "predict", lambda self, texts: fake(texts))
    return fake


def test_a_field_over_the_csv_limit_names_the_file_and_row(cli, project, gateway):
    """D4: a field over 131,072 characters was a `_csv.Error` traceback."""
    src = project / "huge.csv"
    src.write_text("id,text\n1,good\n2,fine\n3,\"" + "x" * 131_073 + "\"\n4,bad\n")
    result = cli("predict", "--file", str(src), "-o", str(project / "out.csv"))
    assert result.exit_code == 2, result.stderr
    assert f"{src}: row 3 (line 4) is not readable as CSV: a field longer than 131,072 characters" in result.stderr
    assert "Traceback" not in result.stderr and "_csv.Error" not in result.stderr
    assert gateway.batches == [] and not (project / "out.csv").exists()


def test_a_row_with_more_fields_than_the_header_is_refused_with_its_row(cli, project, gateway):
    """D2: `hello,1,EXTRA,MORE` under `text,id` was scored and EXTRA,MORE silently left out of the output."""
    src = project / "ragged.csv"
    src.write_text("text,id\ngood stuff,1\nhello,2,EXTRA,MORE\nbad,3\n")
    result = cli("predict", "--file", str(src), "-o", str(project / "out.csv"))
    assert result.exit_code == 2, result.stderr
    assert (f"{src}: row 2 (line 3) has 4 fields, the header names 2 (text, id): "
            "the extra field(s) 'EXTRA', 'MORE' would be lost") in result.stderr
    assert "quote a field" in result.stderr
    assert gateway.batches == [] and not (project / "out.csv").exists()


def test_an_empty_file_or_a_directory_says_what_it_is(cli, project, gateway):
    """D25: an empty file said `missing column 'text' (columns: )`, a directory `no such file`."""
    (project / "empty.csv").write_text("")
    result = cli("predict", "--file", str(project / "empty.csv"))
    assert result.exit_code == 2 and "empty.csv: empty: no header line" in result.stderr, result.stderr
    assert "missing column" not in result.stderr
    (project / "somedir").mkdir()
    result = cli("predict", "--file", str(project / "somedir"))
    assert result.exit_code == 2 and "somedir: is a directory, not a CSV file" in result.stderr, result.stderr
    assert gateway.batches == [] and sorted(p.name for p in project.iterdir()) == ["empty.csv", "mlops.toml", "somedir"]


def _stdin(monkeypatch, data: bytes):
    import io

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def test_file_dash_reads_the_csv_from_stdin_and_writes_stdout(cli, project, gateway, monkeypatch):
    """D25: `--file -` was `-: no such file`; the scored CSV goes to stdout (no file name to derive one from)."""
    _stdin(monkeypatch, b"id,text\n1,good stuff\n2,bad stuff\n")
    result = cli("predict", "--file", "-")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["id,text,label,confidence,model_version", "1,good stuff,Positive,0.9,7",
                                          "2,bad stuff,Negative,0.9,7"]
    assert "wrote 2 predictions to stdout" in result.stderr
    assert sorted(p.name for p in project.iterdir()) == ["mlops.toml"]

    _stdin(monkeypatch, b"id,text\n1,good stuff\n")
    result = cli("--json", "predict", "--file", "-", "-o", str(project / "out.csv"))
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["output"] == str(project / "out.csv")
    assert (project / "out.csv").read_text().splitlines()[1] == "1,good stuff,Positive,0.9,7"


def test_file_dash_with_json_and_no_output_is_a_usage_error(cli, project, gateway, monkeypatch):
    _stdin(monkeypatch, b"text\ngood\n")
    result = cli("--json", "predict", "--file", "-")
    assert result.exit_code == 2 and "-o scored.csv" in result.stderr, result.stderr
    # with --json a failure is one JSON document on stdout (issue 26 D21), never a CSV
    assert json.loads(result.stdout)["error"]["type"] == "UsageError" and gateway.batches == []


def test_file_dev_stdin_on_a_pipe_is_read(project):
    """D25: /dev/stdin on a pipe is not a regular file: it was `no such file`. A real process and pipe; the
    ragged second row stops it before any gateway is needed, naming the row it read through the pipe."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "mlops_cli", "predict", "--file", "/dev/stdin", "-o", "out.csv"],
                          input=b"text,id\ngood,1\nhello,2,EXTRA\n", cwd=project, capture_output=True, timeout=120)
    stderr = proc.stderr.decode()
    assert proc.returncode == 2, stderr
    assert "/dev/stdin: row 2 (line 3) has 3 fields" in stderr and "Traceback" not in stderr
    assert not (project / "out.csv").exists()

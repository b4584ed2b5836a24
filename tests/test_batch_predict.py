"""`mlops predict --file`: streamed scoring, input columns kept, long rows, `-o DIR`, flat memory."""

from __future__ import annotations

import csv
import tracemalloc

import pytest

from mlops_cli.core.batch_predict import predict_file
from mlops_cli.core.errors import DataError, MlopsError

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


def _peak_bytes(tmp_path, n_rows):
    src = write_csv(tmp_path / f"in-{n_rows}.csv", ["id", "text"],
                    ([i, f"review number {i}: good enough, worked for my headaches"] for i in range(n_rows)))
    tracemalloc.start()
    try:
        predict_file(FakeGateway(), src, "text", tmp_path / f"out-{n_rows}.csv", MAX_BATCH, max_chars=MAX_CHARS)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_number_of_rows(tmp_path):
    """Streaming: 50x the rows, about the same peak (the old reader held every row: ~0.8 KB each)."""
    small, large = _peak_bytes(tmp_path, 400), _peak_bytes(tmp_path, 20_000)
    assert large < small * 1.5 + 64_000, (small, large)


def test_a_shed_batch_is_sent_again_after_retry_after(tmp_path, monkeypatch):
    from mlops_cli.core import batch_predict
    from mlops_cli.core.errors import GatewayOverloaded

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

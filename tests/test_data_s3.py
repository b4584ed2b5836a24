"""The DVC remote on S3, against a real S3 protocol server (moto, in its own virtualenv) on loopback."""

from __future__ import annotations

import json
import os
import shutil
import time

import httpx
import pytest

from .support import csv_digests, free_port


@pytest.fixture
def s3_project(project, s3_endpoint, monkeypatch):
    bucket = f"dvc-{os.getpid()}-{time.monotonic_ns()}"
    assert httpx.put(f"{s3_endpoint}/{bucket}").status_code == 200
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    (project / "mlops.toml").write_text(
        f'[data]\nremote = "s3://{bucket}/datasets"\ns3_endpoint_url = "{s3_endpoint}"\n'
    )
    return project, s3_endpoint, bucket


def test_push_pull_round_trip_through_s3(cli, s3_project):
    project, endpoint, bucket = s3_project
    assert cli("data", "prepare").exit_code == 0
    before = csv_digests(project / "data" / "reviews")

    pushed = cli("data", "push", "--json")
    assert pushed.exit_code == 0, pushed.stderr
    listing = httpx.get(f"{endpoint}/{bucket}?list-type=2&prefix=datasets/").text
    files = [f for f in (project / "data" / "reviews").rglob("*") if f.is_file()]
    assert listing.count("<Key>datasets/") == len(files) + 1  # every file of the dataset and the .dir manifest
    assert json.loads(cli("data", "status", "--json").stdout)["remote"] == "in sync"

    shutil.rmtree(project / ".dvc" / "cache")
    shutil.rmtree(project / "data" / "reviews")
    pulled = cli("data", "pull", "--json")
    assert pulled.exit_code == 0, pulled.stderr
    assert csv_digests(project / "data" / "reviews") == before


def test_unreachable_s3_endpoint_is_one_clear_error(cli, project, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    (project / "mlops.toml").write_text(
        f'[data]\nremote = "s3://nowhere/x"\ns3_endpoint_url = "http://127.0.0.1:{free_port()}"\n'
    )
    assert cli("data", "prepare").exit_code == 0
    result = cli("data", "push")
    assert result.exit_code == 2
    assert "s3://nowhere/x" in result.stderr and "fix:" in result.stderr
    assert "Traceback" not in result.stderr

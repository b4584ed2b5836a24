"""Acceptance 2: train, log, register and load a model against a real `mlflow server` on loopback."""

from __future__ import annotations

import json

import pytest

from .support import free_port, running_mlflow_server


@pytest.fixture
def mlflow_server(tmp_path):
    """`mlflow server` on 127.0.0.1 with its own sqlite store and proxied artifacts; stopped afterwards."""
    store = tmp_path / "server"
    store.mkdir()
    args = ["--host", "127.0.0.1", "--port", str(free_port()), "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
            "--artifacts-destination", str(store / "artifacts")]
    with running_mlflow_server(args, cwd=store) as url:
        yield url, store


@pytest.mark.slow
def test_train_register_and_load_over_http(project, cli, tiny_base_model, mlflow_server):
    import mlflow
    import pandas as pd
    from mlflow.tracking import MlflowClient

    url, store = mlflow_server
    (project / "mlops.toml").write_text(
        '[project]\nname = "test-project"\n'
        f'[train]\nbase_model = "{tiny_base_model}"\nmax_length = 64\n'
        f'[registry]\ntracking_uri = "{url}"\nmin_f1 = 0.0\n')
    assert cli("data", "prepare").exit_code == 0

    result = cli("--json", "train", "--log", "--max-steps", "10")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["tracking_uri"] == url

    client = MlflowClient(tracking_uri=url)
    run = client.get_run(out["run_id"])
    assert run.info.status == "FINISHED"
    assert "macro_f1" in run.data.metrics and run.data.params["max_steps"] == "10"
    assert len(client.get_metric_history(out["run_id"], "train_loss")) == 10
    assert {a.path for a in client.list_artifacts(out["run_id"], "eval")} == {
        "eval/confusion_matrix.png", "eval/reliability_diagram.png"}
    # Everything went to the server's store, nothing to the project's embedded one.
    assert not (project / ".mlops" / "mlflow").exists()
    assert any((store / "artifacts").rglob("MLmodel"))

    registered = cli("--json", "register", "--alias", "champion")
    assert registered.exit_code == 0, registered.stderr
    assert json.loads(registered.stdout)["aliases"] == ["champion"]
    listed = json.loads(cli("--json", "models", "list").stdout)
    assert [(v["version"], v["aliases"]) for v in listed["versions"]] == [("1", ["champion"])]

    mlflow.set_tracking_uri(url)
    model = mlflow.pyfunc.load_model("models:/review-sentiment@champion")
    frame = model.predict(pd.DataFrame({"text": ["Worked well, no side effects."]}))
    assert frame.loc[0, "label"] in {"Negative", "Positive"}
    assert frame.loc[0, "p_Negative"] + frame.loc[0, "p_Positive"] == pytest.approx(1.0)

    evaluated = cli("--json", "eval", "--alias", "champion")
    assert evaluated.exit_code == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["evaluation"]["metrics"]["macro_f1"] == pytest.approx(
        out["evaluation"]["metrics"]["macro_f1"], abs=1e-6)

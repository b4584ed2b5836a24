"""The storage contract between MLflow 3.17 and KServe, against a real `mlflow server` on loopback.

The server runs with the flags charts/mlflow.py renders (allowed hosts, proxied artifacts); its artifact
directory plays MLflow's PVC (`mlflow-data`, mounted at /mlflow). A model trained and registered through
our code is resolved to the storageUri the InferenceService would get; the directory that URI names
on the volume must hold a model our predictor loads. A caller with Host `mlflow.<ns>.svc.cluster.local`
(drift service, deploy) must be accepted, and an unknown Host still refused.
"""

from __future__ import annotations

import httpx
import pytest

from tests.support import free_port, running_mlflow_server

NAMESPACE = "ml-prod"


@pytest.fixture(scope="module")
def rendered_mlflow_server(tmp_path_factory):
    """`mlflow server` started with the rendered container's own flags, on loopback paths."""
    from charts import mlflow as mlflow_chart
    from mlops_cli.config.settings import Config

    tmp_path = tmp_path_factory.mktemp("mlflow")
    config = Config.model_validate({"kubernetes": {"namespace": NAMESPACE}})
    (dep,) = [o for o in mlflow_chart.objects(config, None) if o["kind"] == "Deployment"]
    command = dep["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:2] == ["mlflow", "server"]
    volume = tmp_path / "mlflow-data"          # what the PVC mounted at /mlflow holds
    (volume / "db").mkdir(parents=True)
    port = free_port()
    local = {"--host": "127.0.0.1", "--port": str(port), "--backend-store-uri": f"sqlite:///{volume / 'db' / 'mlflow.db'}",
             "--artifacts-destination": str(volume / mlflow_chart.ARTIFACTS_DIR.removeprefix("/mlflow/"))}
    args = list(command[2:])
    for flag, value in local.items():
        args[args.index(flag) + 1] = value
    allowed = args[args.index("--allowed-hosts") + 1]
    with running_mlflow_server(args, cwd=tmp_path) as url:
        yield url, port, volume, allowed


def test_cluster_callers_are_accepted_by_host(rendered_mlflow_server):
    url, port, _, allowed = rendered_mlflow_server
    path = "/api/2.0/mlflow/experiments/search?max_results=1"
    for host in (f"mlflow.{NAMESPACE}.svc.cluster.local:5000", f"mlflow.{NAMESPACE}.svc.cluster.local", "mlflow:5000"):
        assert f"{host}" in allowed.split(",")
        # the server listens on a free port; the Host header is what a cluster caller sends
        assert httpx.get(url + path, headers={"Host": host}, timeout=10).status_code == 200, host
    refused = httpx.get(url + path, headers={"Host": "attacker.example.com"}, timeout=10)
    assert refused.status_code == 403  # the guard is on: the list is not a wildcard


@pytest.mark.slow
def test_registered_version_resolves_to_a_storage_uri_our_predictor_loads(project, cli, tiny_base_model, rendered_mlflow_server,
                                                                          monkeypatch):
    import models.onnx_export
    from charts.inference_service import cluster_uri, render, storage_uri
    from charts.mlflow import DATA_PVC
    from mlops_cli.config.loading import load_config
    from mlops_cli.registry.serving_runtime import RUNTIME_TAG, served_artifact_uri
    from mlops_cli.registry.versions import resolve_version
    from models.predictor import SentimentPredictor

    url, _, volume, _ = rendered_mlflow_server
    (project / "mlops.toml").write_text(
        '[project]\nname = "t"\n'
        f'[train]\nbase_model = "{tiny_base_model}"\nmax_length = 32\n'
        f'[registry]\ntracking_uri = "{url}"\nmin_f1 = 0.0\n'
        f'[kubernetes]\nnamespace = "{NAMESPACE}"\n')
    assert cli("data", "prepare").exit_code == 0
    trained = cli("--json", "train", "--log", "--max-steps", "2")
    assert trained.exit_code == 0, trained.stderr
    registered = cli("--json", "register")
    assert registered.exit_code == 0, registered.stderr

    config = load_config()
    ref = resolve_version(config, "1")
    assert ref.source.startswith("models:/m-")           # MLflow 3: a logged-model name, not a location
    assert ref.location.startswith("mlflow-artifacts:/")   # the real artifact location, served by MLflow
    uri = storage_uri(config, ref.location)
    assert uri.startswith(f"pvc://{DATA_PVC}/")
    isvc = render(config, version=ref.version, source_uri=ref.location)
    assert {"name": "STORAGE_URI", "value": uri} in isvc["spec"]["predictor"]["containers"][0]["env"]

    # KServe mounts pvc://<claim>/<path> read-only and hands <path> of the volume to the predictor.
    model_dir = volume / uri.removeprefix(f"pvc://{DATA_PVC}/")
    assert (model_dir / "mlops_classifier.json").is_file(), sorted(p.name for p in model_dir.parent.iterdir())
    predictor = SentimentPredictor(config.serving.model_name, model_dir, ref.version)
    assert predictor.load()
    logits, features = predictor.infer(["Worked well, no side effects.", "Terrible headaches."])
    assert logits.shape[0] == 2 and len(features) == 2

    # The default runtime, onnx-int8: deploy exports the version once, logs it to the version's run, and
    # the storageUri names the export. MLflow 3.17 keeps run artifacts (<exp>/<run_id>/artifacts) apart
    # from the logged model's (<exp>/models/<model_id>/artifacts): sqlalchemy_store.py create_run and
    # create_logged_model. So the export is not under the model location the classifier came from.
    assert config.serving.runtime == "onnx-int8" and RUNTIME_TAG not in ref.tags
    served = served_artifact_uri(config, ref)
    exported = resolve_version(config, "1")
    assert exported.tags[RUNTIME_TAG] == f"runs:/{ref.run_id}/onnx-int8"
    monkeypatch.setattr(models.onnx_export, "export_int8", lambda *a: pytest.fail("exported a second time"))
    assert served_artifact_uri(config, exported) == served            # once per version: the tag is the record
    isvc = render(config, version=ref.version, source_uri=exported.location, served_uri=served)
    (container,) = isvc["spec"]["predictor"]["containers"]
    onnx_uri = cluster_uri(config, served)
    assert onnx_uri.startswith(f"pvc://{DATA_PVC}/") and {"name": "STORAGE_URI", "value": onnx_uri} in container["env"]
    command = container["command"]
    assert command[command.index("--runtime") + 1] == "onnx-int8"     # no `auto` falling back to torch
    onnx_dir = volume / onnx_uri.removeprefix(f"pvc://{DATA_PVC}/")
    assert {"model.onnx", "mlops_classifier.json"} <= {p.name for p in onnx_dir.iterdir()}
    assert model_dir not in onnx_dir.parents and onnx_dir not in model_dir.parents
    served_predictor = SentimentPredictor(config.serving.model_name, onnx_dir, ref.version, runtime="onnx-int8")
    assert served_predictor.load() and type(served_predictor.classifier).__name__ == "OnnxClassifier"
    assert served_predictor.infer(["Worked well, no side effects."])[0].shape[0] == 1
    # Told its runtime, the predictor refuses the fp32 directory instead of serving torch unasked.
    with pytest.raises(FileNotFoundError, match="not an exported runtime"):
        SentimentPredictor(config.serving.model_name, model_dir, ref.version, runtime="onnx-int8").load()

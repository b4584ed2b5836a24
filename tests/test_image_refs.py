"""Every image of ours comes from [images] (charts/image_refs.py): a registry the user owns, by digest once pushed."""

from __future__ import annotations

import json

import pytest

from tests.upstream_bundle import build_bundle, kubernetes_toml

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def _config(project, images: str = ""):
    from mlops_cli.config.loading import load_config

    pins = build_bundle(project / "bundle")
    (project / "mlops.toml").write_text('[project]\nname = "t"\n' + images + kubernetes_toml(project / "bundle", pins))
    return load_config()


def _our_images(config) -> dict[str, set[str]]:
    from charts import inference_service
    from charts.platform import all_objects

    objects = all_objects(config, None) + [inference_service.render(config, version="1", source_uri="s3://b/m")]
    found: dict[str, set[str]] = {}
    for obj in objects:
        if (obj["metadata"].get("labels") or {}).get("app.kubernetes.io/part-of") != "mlops":
            continue
        spec = obj.get("spec") or {}
        pod = (spec.get("template") or {}).get("spec") or spec.get("predictor") or {}
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            found.setdefault(obj["metadata"]["name"], set()).add(c["image"])
    return found


def test_default_is_the_kind_local_registry_with_the_package_version(project):
    from charts.image_refs import image_ref, is_local
    from mlops_cli import __version__

    config = _config(project)
    assert image_ref(config, "gateway") == f"kind.local/mlops-gateway:{__version__}"
    assert is_local(image_ref(config, "predictor"))  # Knative skips digest resolution for kind.local
    images = _our_images(config)
    for component in ("gateway", "drift", "mlflow", "sentiment"):
        assert all(i.startswith("kind.local/mlops-") for i in images[component]), images[component]
    assert not any("ghcr.io/mlops/" in i for group in images.values() for i in group)


def test_every_rendered_image_of_ours_comes_from_the_images_section(project):
    from charts.image_refs import image_ref, is_local

    config = _config(project, f'[images]\nregistry = "{ECR}"\ntag = "2026.11.27"\n')
    assert image_ref(config, "drift") == f"{ECR}/mlops-drift:2026.11.27" and not is_local(image_ref(config, "drift"))
    images = _our_images(config)
    expected = {"gateway": "gateway", "drift": "drift", "mlflow": "mlflow", "sentiment": "predictor"}
    for name, component in expected.items():
        assert images[name] == {f"{ECR}/mlops-{component}:2026.11.27"}, name
    third_party = {i for name, group in images.items() if name not in expected for i in group}
    assert third_party and not any(i.startswith(ECR) for i in third_party)  # Prometheus, Grafana, ... stay upstream


def test_pushed_digests_win_over_tags(project):
    from charts.image_refs import image_ref

    config = _config(project, f'[images]\nregistry = "{ECR}"\n')
    digest = f"{ECR}/mlops-gateway@sha256:" + "a" * 64
    (project / ".mlops").mkdir()
    (project / ".mlops" / "images.json").write_text(json.dumps({"gateway": digest}))
    assert image_ref(config, "gateway") == digest
    assert image_ref(config, "drift").endswith("/mlops-drift:0.1.0")
    assert _our_images(config)["gateway"] == {digest}


def test_a_broken_record_or_registry_is_one_clear_error(project):
    from charts.image_refs import image_ref
    from mlops_cli.common.errors import ConfigError
    from mlops_cli.config.loading import load_config

    config = _config(project, '[images]\nrecord = "pushed.json"\n')
    (project / "pushed.json").write_text("{not json")
    with pytest.raises(ConfigError, match="pushed.json: not a readable image record"):
        image_ref(config, "gateway")
    (project / "mlops.toml").write_text('[images]\nregistry = "https://ghcr.io/acme"\n')
    with pytest.raises(ConfigError, match="images.registry"):
        load_config()

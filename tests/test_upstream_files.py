"""tests/upstream_files.py: the real upstream files come from pinned Go modules, a changed module is
refused, and without `go` or without network and cache a test fails with one line (never skips)."""

from __future__ import annotations

import pytest

from tests import upstream_files
from tests.upstream_files import UpstreamUnavailable, documents, knative_module_version, release_manifest


def test_knative_release_tags_map_to_their_go_module_versions():
    assert knative_module_version("knative-v1.21.1") == "v0.48.1"
    assert knative_module_version("knative-v1.21.0") == "v0.48.0"
    with pytest.raises(UpstreamUnavailable, match="not a Knative release tag"):
        knative_module_version("v1.21.1")


def test_a_module_whose_hash_is_not_the_pin_is_refused():
    module, version = "github.com/kserve/kserve", upstream_files.pinned_versions().kserve
    with pytest.raises(UpstreamUnavailable, match=f"{module}@{version} has hash h1:.* but tests/upstream_files.py pins h1:wrong"):
        upstream_files.download(module, version, "h1:wrong")


def test_an_unpinned_version_names_the_command_that_prints_its_pin():
    with pytest.raises(UpstreamUnavailable, match=r"go mod download -json github.com/kserve/kserve@v0.0.1"):
        upstream_files.download("github.com/kserve/kserve", "v0.0.1")


def test_without_go_the_failure_says_what_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(UpstreamUnavailable) as failed:
        upstream_files.download.__wrapped__("github.com/kserve/kserve", "v0.20.0")
    assert "`go` is not on PATH: install Go" in str(failed.value) and "\n" not in str(failed.value)
    assert isinstance(failed.value, pytest.fail.Exception)  # a failure, never a skip


def test_offline_without_cache_the_failure_says_to_go_online(monkeypatch, tmp_path):
    monkeypatch.setenv("GOMODCACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("GOPROXY", "off")
    with pytest.raises(UpstreamUnavailable) as failed:
        upstream_files.download.__wrapped__("github.com/kserve/kserve", "v0.20.0")
    assert "go online once" in str(failed.value) and "\n" not in str(failed.value)


def test_knative_core_is_config_core_in_ko_order_with_unresolved_images_marked():
    tag = upstream_files.pinned_versions().knative                  # e.g. knative-v1.21.2, from mlops.toml
    core = release_manifest("knative-core").decode()
    kinds = [d["kind"] for d in documents(core.encode())]
    assert kinds[0] == "Namespace" and "ko://" not in core
    assert f"image: ko.local/knative.dev/serving/cmd/controller:{tag}" in core
    assert f'app.kubernetes.io/version: "{tag.removeprefix("knative-v")}"' in core
    assert "app.kubernetes.io/version: devel" not in core
    # the files that are symlinks into vendor/ in knative/serving's tree are there (from knative.dev/networking)
    assert "config-network" in {d["metadata"]["name"] for d in documents(core.encode()) if d["kind"] == "ConfigMap"}
    crds = {d["metadata"]["name"] for d in documents(release_manifest("knative-crds"))}
    assert {"ingresses.networking.internal.knative.dev", "images.caching.internal.knative.dev", "services.serving.knative.dev"} <= crds

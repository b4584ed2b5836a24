"""mlops.lock (issue 22 item 5): the sha256 of each upstream release manifest, recorded by the first online
`up` (trust on first use, as Terraform's .terraform.lock.hcl), checked on every later read, changed only by
`mlops lock --upgrade`. "Upstream" here is a loopback HTTP server serving the offline bundle's files
(tests/upstream_bundle.py); nothing is fetched from GitHub."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tomllib
from functools import partial
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import pytest

from charts import upstream
from charts.upstream import MANIFESTS
from mlops_cli.config.cluster_sections import KubernetesConfig
from tests.k8s_support import EmulatorThread, write_kubeconfig
from tests.support import REPO, free_port, http_server
from tests.upstream_bundle import build_bundle, kubernetes_toml


class _Files(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def release_server(directory: Path):
    """A directory served on loopback, as GitHub serves release assets: GET <base>/<key>.yaml."""
    with http_server(partial(_Files, directory=str(directory))) as base:
        yield base


def _url_env(monkeypatch, base: str) -> None:
    """Every manifest URL of the shipped mlops.toml pointed at the loopback server ({version} kept in the query)."""
    for key, (_, url_field, _) in MANIFESTS.items():
        monkeypatch.setenv(f"MLOPS_KUBERNETES__{url_field.upper()}", f"{base}/{key}.yaml?v={{version}}")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _lock(project: Path) -> dict:
    return tomllib.loads((project / "mlops.lock").read_text())["manifests"]


@pytest.fixture
def served(project, monkeypatch):
    """The shipped mlops.toml, its upstream URLs on a loopback server serving the bundle's files."""
    files = project / "upstream"
    build_bundle(files)
    shutil.copyfile(REPO / "mlops.toml", project / "mlops.toml")
    with release_server(files) as base:
        _url_env(monkeypatch, base)
        yield files


def _config():
    from mlops_cli.config.loading import load_config

    return load_config()


# --- acceptance: the shipped config works; a changed upstream file is refused naming it -------------

def test_shipped_config_up_records_the_lock_instead_of_refusing_empty_pins(cli, project, served, monkeypatch):
    with EmulatorThread() as emu:
        monkeypatch.setenv("MLOPS_KUBERNETES__KUBECONFIG", str(write_kubeconfig(project / "kubeconfig", emu.url)))
        result = cli("--json", "up", "--target", "kubernetes", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "commit mlops.lock" in result.stdout
    config = _config()
    assert all(getattr(config.kubernetes, sha) == "" for _, _, sha in MANIFESTS.values())  # the shipped pins are empty
    lock = _lock(project)
    assert set(lock) == set(MANIFESTS)
    for key, entry in lock.items():
        p = upstream.pin(config, key)
        assert (entry["version"], entry["url"], entry["sha256"]) == (p.version, p.url, _sha(served / f"{key}.yaml"))
        assert entry["recorded_at"].endswith("Z")


def test_a_changed_upstream_file_is_refused_naming_it(cli, project, served, monkeypatch):
    upstream.verify_all(_config())                     # a teammate's first up: mlops.lock recorded, committed
    recorded = (project / "mlops.lock").read_text()
    shutil.rmtree(project / ".mlops")                  # a fresh clone: nothing cached
    kserve = served / "kserve.yaml"
    before = _sha(kserve)
    kserve.write_text(kserve.read_text() + "# re-published\n")
    with EmulatorThread() as emu:
        monkeypatch.setenv("MLOPS_KUBERNETES__KUBECONFIG", str(write_kubeconfig(project / "kubeconfig", emu.url)))
        result = cli("up", "--target", "kubernetes", "--dry-run")
    assert result.exit_code == 2
    err = " ".join(result.stderr.split())
    url = upstream.pin(_config(), "kserve").url
    assert f"kserve v0.20.0: sha256 of {url} is {_sha(kserve)}, but {project / 'mlops.lock'} pins {before}" in err
    assert "mlops lock --upgrade" in err and "Traceback" not in result.stderr
    assert (project / "mlops.lock").read_text() == recorded      # nothing recorded over the good entry
    assert not (project / ".mlops" / "manifests" / "kserve").exists()  # and the changed file is not cached


# --- one error lists everything; the bundle is checked the same way --------------------------------

def test_every_missing_or_changed_pin_is_listed_in_one_error(project, monkeypatch):
    from mlops_cli.common.errors import PreflightError

    build_bundle(project / "bundle")
    (project / "mlops.toml").write_text('[project]\nname = "t"\n' + kubernetes_toml(project / "bundle", {}))
    results = upstream.verify_all(_config())
    assert {r.action for r in results} == {"recorded"}
    recorded = (project / "mlops.lock").read_text()
    for key in ("cert-manager", "kourier"):
        path = project / "bundle" / f"{key}.yaml"
        path.write_text(path.read_text() + "# changed\n")
    (project / "bundle" / "kserve-runtimes.yaml").unlink()
    monkeypatch.setenv("MLOPS_KUBERNETES__ENVOY_GATEWAY_VERSION", "v1.8.9")
    with pytest.raises(PreflightError) as caught:
        upstream.verify_all(_config())
    message = caught.value.message
    assert "4 of 7 cannot be used" in message
    for key in ("cert-manager", "kourier"):
        assert f"sha256 of {project / 'bundle' / key}.yaml is {_sha(project / 'bundle' / f'{key}.yaml')}" in message
    assert "offline bundle has no kserve-runtimes.yaml" in message
    shipped = KubernetesConfig().envoy_gateway_version
    assert "mlops.toml asks for envoy-gateway v1.8.9" in message and f"records {shipped}" in message
    assert (project / "mlops.lock").read_text() == recorded


def test_the_bundle_is_verified_against_the_lock(project):
    from mlops_cli.common.errors import PreflightError

    build_bundle(project / "bundle")
    (project / "mlops.toml").write_text('[project]\nname = "t"\n' + kubernetes_toml(project / "bundle", {}))
    upstream.verify_all(_config())
    assert upstream.load(_config(), "kserve")[1]["kind"] == "CustomResourceDefinition"  # load checks the lock too
    path = project / "bundle" / "kserve.yaml"
    path.write_bytes(path.read_bytes().replace(b"kserve-controller", b"kserve-c0ntroller"))
    with pytest.raises(PreflightError, match=f"sha256 of {path} is {_sha(path)}, but .*mlops.lock pins"):
        upstream.load(_config(), "kserve")


def test_an_explicit_pin_wins_and_must_agree_with_the_lock(project):
    from mlops_cli.common.errors import ConfigError, PreflightError

    pins = build_bundle(project / "bundle")
    (project / "mlops.toml").write_text('[project]\nname = "t"\n' + kubernetes_toml(project / "bundle", {}))
    upstream.verify_all(_config())
    right = _config().with_overrides({"kubernetes.kserve_sha256": pins["kserve_sha256"]})
    assert upstream.load(right, "kserve")
    wrong = _config().with_overrides({"kubernetes.kserve_sha256": "0" * 64})
    with pytest.raises(ConfigError, match=f"kserve_sha256 pins {'0' * 64}, but .*mlops.lock records {pins['kserve_sha256']}"):
        upstream.load(wrong, "kserve")
    # without a lock entry the explicit pin alone decides, and is what gets recorded
    (project / "mlops.lock").unlink()
    with pytest.raises(PreflightError, match=r"\[kubernetes\].kserve_sha256 pins 0{64}"):
        upstream.verify_all(wrong)
    assert not (project / "mlops.lock").exists()
    upstream.verify_all(right)
    assert _lock(project)["kserve"]["sha256"] == pins["kserve_sha256"]


def test_without_network_and_without_a_lock_one_clear_error(cli, project, monkeypatch):
    shutil.copyfile(REPO / "mlops.toml", project / "mlops.toml")
    _url_env(monkeypatch, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    result = cli("lock")
    assert result.exit_code == 1  # a server that does not answer: worth retrying
    err = " ".join(result.stderr.split())
    assert err.count("error:") == 1 and "7 of 7 cannot be used; nothing was recorded" in err
    assert all(f"{key}: cannot download {key}" in err for key in MANIFESTS)
    assert "offline_bundle" in err and not (project / "mlops.lock").exists()


# --- mlops lock --upgrade ----------------------------------------------------------------------------

def test_lock_upgrade_takes_a_new_version_deliberately_and_prints_old_to_new(cli, project, served, monkeypatch):
    first = cli("--json", "lock")
    assert first.exit_code == 0, first.stderr
    assert {m["action"] for m in json.loads(first.stdout)["manifests"]} == {"recorded"}
    before = _lock(project)
    old = before["kserve"]
    (served / "kserve.yaml").write_text((served / "kserve.yaml").read_text() + "# v0.20.1\n")
    monkeypatch.setenv("MLOPS_KUBERNETES__KSERVE_VERSION", "v0.20.1")
    refused = cli("lock")
    assert refused.exit_code == 2 and "mlops lock --upgrade" in " ".join(refused.stderr.split())
    shown = cli("lock", "--upgrade")
    assert shown.exit_code == 0, shown.stderr
    assert f"v0.20.0 {old['sha256'][:12]}... -> v0.20.1 {_sha(served / 'kserve.yaml')[:12]}..." in shown.stdout
    new = _lock(project)
    assert (new["kserve"]["version"], new["kserve"]["sha256"]) == ("v0.20.1", _sha(served / "kserve.yaml"))
    assert new["kserve-runtimes"]["version"] == "v0.20.1"  # the same version field: both KServe files move
    assert new["cert-manager"] == before["cert-manager"]  # recorded_at included: an unchanged entry is not rewritten
    again = json.loads(cli("--json", "lock", "--upgrade").stdout)["manifests"]
    assert {m["action"] for m in again} == {"unchanged"}
    assert {m["action"] for m in json.loads(cli("--json", "lock").stdout)["manifests"]} == {"verified"}


def test_a_broken_lock_file_is_a_clear_error(cli, project):
    (project / "mlops.lock").write_text('[manifests.kserve]\nversion = "v0.20.0"\n')
    result = cli("lock")
    assert result.exit_code == 2
    err = " ".join(result.stderr.split())
    assert f"{project / 'mlops.lock'}: [manifests.kserve] must hold exactly recorded_at, sha256, url, version" in err

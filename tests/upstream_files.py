"""The upstream files `mlops up` applies, at the versions mlops.toml pins, taken from the upstream
projects' Go modules: never from a file outside the repository, never from a hand-written stand-in.

Each upstream project's tagged tree is a Go module on the Go module proxy. `go mod download -json
module@version` fetches it once into GOMODCACHE (checked against sum.golang.org) and prints the
module's `Dir` and its `Sum`; `MODULES` pins that `Sum` (the `h1:` line of a go.sum), so a changed
module is refused. Warm, nothing touches the network. Without `go`, or with neither network nor
cache, every caller fails with one line that says what to do (`UpstreamUnavailable`).

Where each file comes from (`SOURCES` says the same per key, for messages and docs):

- kserve, kserve-runtimes, kserve-crds: the release assets themselves. KServe commits them to the tag:
  github.com/kserve/kserve@<kserve_version> `install/<version>/{kserve,kserve-cluster-resources,
  kserve-crds}.yaml` (hack/release/generate-install.sh writes them; `kserve.yaml` is
  `kustomize build config/overlays/all` with every Namespace filtered out, its line 118).
- inferenceservice-config: same module, `config/configmap/inferenceservice.yaml`.
- knative-core, knative-crds: generated from knative.dev/serving the way hack/generate-yamls.sh does
  (`ko resolve -R -f config/core/`; `ko resolve -f config/core/300-resources/ -f
  config/core/300-imagecache.yaml`): the files in ko's walk order, one `---` between them, the
  `app.kubernetes.io/version: devel` label set to the release (its LABEL_YAML_CMD). Two differences
  from the published asset: `ko://` image references become `ko.local/<import path>:<tag>` (ko's name for
  an image it has not pushed; the release has gcr.io digests we cannot know), and ko's YAML
  re-serialisation (same objects, other whitespace) is not done.
- kourier: knative.dev/net-kourier, `ko resolve -f config/` (its hack/release.sh), the same way.
- Knative Serving's single files (features, CRDs): knative.dev/serving `config/core/...`.
- envoy-gateway: generated from github.com/envoyproxy/gateway the way its release is (`make
  generate-manifests`, tools/make/kube.mk, with IMAGE=envoyproxy/gateway TAG=<version>
  IMAGE_PULL_POLICY=IfNotPresent as .github/workflows/release.yaml runs it): charts/gateway-helm/values.yaml
  is values.tmpl.yaml with the image filled in (helm.mk helm-generate, envsubst), then `helm template eg-crds
  charts/gateway-crds-helm --set crds.gatewayAPI.enabled=true --set crds.envoyGateway.enabled=true` followed
  by `helm template --set createNamespace=true --set crds.gatewayAPI.safeUpgradePolicy.enabled=false eg
  charts/gateway-helm --namespace envoy-gateway-system`. tools/ (its own Go module) is not in the module zip:
  the recipe is read from the tag's git tree. Their helm is v3.20.2 (tools/go.mod); ours is `HELM`.
  mlops.toml names v1.8.4, which the Go module proxy refuses (403 "This module version is not available",
  checked 2026-12-06): the newest 1.8.x it serves, v1.8.3, stands in (`PROXY_REFUSED`).

Knative tags each release twice on one commit: `knative-v1.M.P` (what mlops.toml names) and the Go
module version `v0.(M+27).P` (knative-v1.21.1 = knative.dev/serving v0.48.1). Files that are symlinks
into vendor/ in the git tree are not in module zips (Go leaves symlinks out); they are read from the
vendored module at the version, and `h1:`, that serving's own go.mod and go.sum name (`KNATIVE_VENDORED`).

Examples::

    kserve = release_manifest("kserve")                   # bytes of kserve.yaml at the pinned version
    features = module_file("knative-serving", "config/core/configmaps/features.yaml")
    release_manifest("kserve", Versions(kserve="v0.20.1"))  # another version: needs its pin in MODULES
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import REPO

HELM = ("helm.sh/helm/v3", "v3.21.4")
# module@version -> the `h1:` hash of its zip (as in a go.sum). A version bump in mlops.toml needs its line here:
# `go mod download -json <module>@<version>` prints it as "Sum" (checked against sum.golang.org).
MODULES: dict[tuple[str, str], str] = {
    ("github.com/kserve/kserve", "v0.20.0"): "h1:Bs7HxmGV4KFqqptDcWseKv+mwD4YOYHJWcuVgPG2Gug=",
    ("knative.dev/serving", "v0.48.1"): "h1:Tm8s/KbtnGp/8srGa+r4ETyO+2+8FhG6qX/NPeRyTJo=",
    ("knative.dev/serving", "v0.48.2"): "h1:CdPvTytMt1wGoKI9hsM5QU1bolUIwkhBGbGojx2l4f4=",
    ("knative.dev/net-kourier", "v0.48.0"): "h1:elioeQg/w1I2NrlUuyEuLrmRbHc4LpJUwykETSrDmvs=",
    ("github.com/cert-manager/cert-manager", "v1.17.0"): "h1:ba7K/WLzcTCFzB+5fQiwD4LAqaRc0c+KwKCD9KqHPSg=",
    ("github.com/cert-manager/cert-manager", "v1.21.2"): "h1:UWgoYM+KLNtRlqmoWOKjKBOBUPVHeepQ6/ac3ERJW68=",
    ("github.com/envoyproxy/gateway", "v1.8.1"): "h1:i8POtrPtel3n0iGP55MNy6U1rTW4msyhkEWjXAF09ts=",
    ("github.com/envoyproxy/gateway", "v1.8.3"): "h1:RY8DKli7Z1w3WuMwbA8J5j2sriIxXTWjVv1Bk77nbHo=",
    HELM: "h1:T/GcIEXU/gNjJnkITlIZ3e9xqkZjhFTmISuStTZ6+Qg=",  # renders cert-manager's chart as its Makefile does
}

# module@version the Go module proxy refuses -> the version read instead (same minor, newest it serves).
PROXY_REFUSED: dict[tuple[str, str], str] = {
    ("github.com/envoyproxy/gateway", "v1.8.4"): "v1.8.3",  # 403 "This module version is not available", 2026-12-06
}

# config/core paths that are symlinks into vendor/ in knative/serving's git tree -> (vendored module, its path).
KNATIVE_VENDORED: dict[str, tuple[str, str]] = {
    "config/core/300-imagecache.yaml": ("knative.dev/caching", "config/image.yaml"),
    "config/core/300-resources/certificate.yaml": ("knative.dev/networking", "config/certificate.yaml"),
    "config/core/300-resources/domain-claim.yaml": ("knative.dev/networking", "config/domain-claim.yaml"),
    "config/core/300-resources/ingress.yaml": ("knative.dev/networking", "config/ingress.yaml"),
    "config/core/300-resources/serverlessservice.yaml": ("knative.dev/networking", "config/serverlessservice.yaml"),
    "config/core/configmaps/network.yaml": ("knative.dev/networking", "config/config-network.yaml"),
}

SOURCES: dict[str, str] = {
    "kserve": "github.com/kserve/kserve@{kserve} install/{kserve}/kserve.yaml (the release asset)",
    "kserve-runtimes": "github.com/kserve/kserve@{kserve} install/{kserve}/kserve-cluster-resources.yaml (the release asset)",
    "kserve-crds": "github.com/kserve/kserve@{kserve} install/{kserve}/kserve-crds.yaml (the release asset)",
    "inferenceservice-config": "github.com/kserve/kserve@{kserve} config/configmap/inferenceservice.yaml",
    "knative-core": "knative.dev/serving@{knative_module} config/core/ (generated as ko resolve -R does; images ko.local/...)",
    "knative-crds": "knative.dev/serving@{knative_module} config/core/300-resources/ + 300-imagecache.yaml (generated)",
    "kourier": "knative.dev/net-kourier@{kourier_module} config/ (generated as ko resolve does; images ko.local/...)",
    "cert-manager": "github.com/cert-manager/cert-manager@{cert_manager} deploy/ (generated as make/manifests.mk does, with helm)",
    "envoy-gateway": "github.com/envoyproxy/gateway@{envoy_gateway_module} charts/ (generated as tools/make/kube.mk "
                     "generate-manifests does, with helm)",
}


class UpstreamUnavailable(pytest.fail.Exception):
    """An upstream module cannot be had (no `go`, no network and no cache, a changed module): the test fails
    (never skips) with this one line and no traceback."""

    def __init__(self, message: str) -> None:
        super().__init__(message, pytrace=False)


@dataclasses.dataclass(frozen=True)
class Versions:
    """The upstream versions, as mlops.toml's [kubernetes] names them (defaults: the repository's mlops.toml)."""

    kserve: str
    knative: str
    kourier: str
    cert_manager: str
    envoy_gateway: str

    @property
    def knative_module(self) -> str:
        return knative_module_version(self.knative)

    @property
    def kourier_module(self) -> str:
        return knative_module_version(self.kourier)

    @property
    def envoy_gateway_module(self) -> str:
        return PROXY_REFUSED.get(("github.com/envoyproxy/gateway", self.envoy_gateway), self.envoy_gateway)


@functools.lru_cache(maxsize=1)
def pinned_versions() -> Versions:
    k = tomllib.loads((REPO / "mlops.toml").read_text())["kubernetes"]
    return Versions(kserve=k["kserve_version"], knative=k["knative_version"], kourier=k["kourier_version"],
                    cert_manager=k["cert_manager_version"], envoy_gateway=k["envoy_gateway_version"])


def knative_module_version(tag: str) -> str:
    """knative-v1.21.1 -> v0.48.1: the Go module version Knative tags on the same commit."""
    m = re.fullmatch(r"knative-v1\.(\d+)\.(\d+)", tag)
    if not m:
        raise UpstreamUnavailable(f"{tag!r} is not a Knative release tag (knative-v1.M.P)")
    return f"v0.{int(m[1]) + 27}.{m[2]}"


def _modules(v: Versions) -> dict[str, tuple[str, str]]:
    return {"kserve": ("github.com/kserve/kserve", v.kserve),
            "knative-serving": ("knative.dev/serving", v.knative_module),
            "net-kourier": ("knative.dev/net-kourier", v.kourier_module),
            "cert-manager": ("github.com/cert-manager/cert-manager", v.cert_manager),
            "envoy-gateway": ("github.com/envoyproxy/gateway", v.envoy_gateway_module)}


# --- Go modules -------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def download(module: str, version: str, h1: str | None = None) -> Path:
    """The read-only directory of module@version in GOMODCACHE, its zip's hash checked against the pin."""
    pin = h1 or MODULES.get((module, version))
    if pin is None:
        raise UpstreamUnavailable(f"{module}@{version} has no pin in tests/upstream_files.py MODULES: add the \"Sum\" "
                                  f"that `go mod download -json {module}@{version}` prints")
    go = shutil.which("go")
    if go is None:
        raise UpstreamUnavailable(f"the tests take upstream release files from Go modules ({module}@{version}), "
                                  "but `go` is not on PATH: install Go 1.22 or newer (https://go.dev/dl/)")
    env = {**os.environ, "GOWORK": "off", "GOFLAGS": "-mod=mod"}
    with tempfile.TemporaryDirectory() as outside_any_module:
        try:
            proc = subprocess.run([go, "mod", "download", "-json", f"{module}@{version}"], cwd=outside_any_module,
                                  env=env, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            raise UpstreamUnavailable(f"go mod download {module}@{version} took over 15 minutes") from None
    try:
        info = json.loads(proc.stdout)
    except json.JSONDecodeError:
        info = {"Error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    if proc.returncode or info.get("Error"):
        reason = str(info.get("Error") or proc.stderr.strip()).splitlines()[0]
        raise UpstreamUnavailable(f"cannot fetch {module}@{version} ({reason}): go online once (the Go module proxy, "
                                  "$GOPROXY) so that `go mod download` caches it in $(go env GOMODCACHE)")
    if info.get("Sum") != pin:
        raise UpstreamUnavailable(f"{module}@{version} has hash {info.get('Sum')}, but tests/upstream_files.py pins {pin}")
    return Path(info["Dir"])


def module_dir(name: str, versions: Versions | None = None) -> Path:
    """name: kserve, knative-serving, net-kourier, cert-manager, envoy-gateway."""
    module, version = _modules(versions or pinned_versions())[name]
    return download(module, version)


def module_file(name: str, relative: str, versions: Versions | None = None) -> bytes:
    """One file of an upstream module, byte for byte (Knative's vendored symlinks resolved)."""
    if name == "knative-serving" and relative in KNATIVE_VENDORED:
        vendored, path = KNATIVE_VENDORED[relative]
        return (_knative_vendored_dir(vendored, versions or pinned_versions()) / path).read_bytes()
    path = module_dir(name, versions) / relative
    if not path.is_file():
        module, version = _modules(versions or pinned_versions())[name]
        raise UpstreamUnavailable(f"{module}@{version} has no {relative}")
    return path.read_bytes()


def _knative_vendored_dir(module: str, v: Versions) -> Path:
    """A module knative.dev/serving vendors, at the version its go.mod requires, hash from its go.sum."""
    serving = module_dir("knative-serving", v)
    version = re.search(rf"^\s*{re.escape(module)} (\S+)$", (serving / "go.mod").read_text(), re.M)
    h1 = re.search(rf"^{re.escape(module)} {re.escape(version[1])} (h1:\S+)$", (serving / "go.sum").read_text(), re.M) if version else None
    if not version or not h1:
        raise UpstreamUnavailable(f"knative.dev/serving@{v.knative_module} does not require {module} in its go.mod/go.sum")
    return download(module, version[1], h1[1])


# --- release manifests --------------------------------------------------------------------------------

def release_manifest(key: str, versions: Versions | None = None) -> bytes:
    """The manifest `[kubernetes]`'s `<key>` names (charts.upstream.MANIFESTS keys), as released: see SOURCES."""
    v = versions or pinned_versions()
    if key in ("kserve", "kserve-runtimes", "kserve-crds"):
        asset = {"kserve": "kserve.yaml", "kserve-runtimes": "kserve-cluster-resources.yaml", "kserve-crds": "kserve-crds.yaml"}[key]
        return module_file("kserve", f"install/{v.kserve}/{asset}", v)
    if key == "inferenceservice-config":
        return module_file("kserve", "config/configmap/inferenceservice.yaml", v)
    if key == "knative-core":
        return _ko_resolve("knative-serving", ["config/core"], v.knative, v, recursive=True)
    if key == "knative-crds":
        return _ko_resolve("knative-serving", ["config/core/300-resources", "config/core/300-imagecache.yaml"], v.knative, v)
    if key == "kourier":
        return _ko_resolve("net-kourier", ["config"], v.kourier, v)
    if key == "cert-manager":
        return _cert_manager(v)
    if key == "envoy-gateway":
        return _envoy_gateway(v)
    raise UpstreamUnavailable(f"no upstream source for {key!r} in tests/upstream_files.py (known: {', '.join(SOURCES)})")


def source(key: str, versions: Versions | None = None) -> str:
    v = versions or pinned_versions()
    return SOURCES[key].format(**dataclasses.asdict(v), knative_module=v.knative_module, kourier_module=v.kourier_module,
                               envoy_gateway_module=v.envoy_gateway_module)


def _ko_resolve(name: str, paths: list[str], tag: str, v: Versions, *, recursive: bool = False) -> bytes:
    """`ko resolve -f <path> ... | LABEL_YAML_CMD`, without ko: the YAML files in ko's order (each -f in turn; a
    directory walked in lexical order, subdirectories only with -R), `---` between files, images ko.local/..."""
    root = module_dir(name, v)
    release = tag.removeprefix("knative-v")
    files: list[str] = []
    for path in paths:
        if path.endswith(".yaml"):
            files.append(path)
            continue
        listed = {p.relative_to(root).as_posix() for p in (root / path).glob("**/*" if recursive else "*") if p.is_file()}
        if name == "knative-serving":
            listed |= {f for f in KNATIVE_VENDORED if f.startswith(path + "/") and (recursive or "/" not in f[len(path) + 1:])}
        files += sorted((f for f in listed if f.endswith((".yaml", ".yml", ".json"))), key=lambda f: f.split("/"))
    texts = []
    for relative in files:
        text = module_file(name, relative, v).decode()
        text = re.sub(r"ko://([\w./-]+)", rf"ko.local/\1:{tag}", text)
        texts.append(text.replace("app.kubernetes.io/version: devel", f'app.kubernetes.io/version: "{release}"'))
    return "".join(f"---\n{t}" if t.endswith("\n") else f"---\n{t}\n" for t in texts).encode()


def _cert_manager(v: Versions) -> bytes:
    """cert-manager.yaml as make/manifests.mk builds it: the chart deploy/charts/cert-manager with Chart.yaml
    versioned and the CRDs concatenated into templates/crds.yaml (hack/concat-yaml.sh), rendered by
    `helm template --api-versions="" --namespace=cert-manager --set creator=static
    --set startupapicheck.enabled=false` with and without crds.enabled; the release is the license header,
    then deploy/manifests/namespace.yaml, the CRDs (hack/extractcrd) and the rest, `---` between them."""
    root = module_dir("cert-manager", v)
    source = root / "deploy" / "charts" / "cert-manager"
    with tempfile.TemporaryDirectory() as tmp:
        chart = Path(tmp) / "cert-manager"
        shutil.copytree(source / "templates", chart / "templates")
        for name in ("values.yaml", "values.schema.json"):
            shutil.copyfile(source / name, chart / name)
        # 1.17 keeps Chart.template.yaml; from 1.18 on it is Chart.yaml with version v0.0.0 (make/manifests.mk
        # sets version and appVersion in both)
        template = source / "Chart.template.yaml"
        meta = yaml.safe_load((template if template.is_file() else source / "Chart.yaml").read_text())
        meta["annotations"].update({"artifacthub.io/signKey": (source / "signkey_annotation.txt").read_text(),
                                    "artifacthub.io/prerelease": "false"})
        meta["version"] = meta["appVersion"] = v.cert_manager
        (chart / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
        if not list((chart / "templates").glob("crd-*.yaml")):  # 1.17: hack/concat-yaml.sh adds them; later charts carry them
            crd_files = sorted((root / "deploy" / "crds").glob("*.yaml"))
            (chart / "templates" / "crds.yaml").write_text("\n---\n".join(p.read_text() for p in crd_files))
        os.chmod(chart, 0o755)
        # --kube-version: what helm's Makefile bakes into a release binary (its client-go v0.36 -> 1.36); `go install`
        # leaves helm's default of 1.20, below the chart's kubeVersion. No cert-manager template reads it.
        flags = ["--api-versions=", "--namespace=cert-manager", "--set=creator=static", "--set=startupapicheck.enabled=false",
                 "--kube-version=1.36.0"]
        everything = _helm("template", *flags, "--set=crds.enabled=true", "cert-manager", str(chart))
        rest = _helm("template", *flags, "cert-manager", str(chart))
    strip = lambda text: re.sub(r"\A---\n", "", text)  # noqa: E731 (the Makefile's sed "1{/^---$/d;}")
    crds = [d.removeprefix("---").strip() for d in re.split(r"\n---", strip(everything))
            if re.search(r"^kind: CustomResourceDefinition$", d, re.M)]
    license_header = (root / "hack" / "boilerplate-yaml.txt").read_text().replace("YEAR", "2022")
    parts = [(root / "deploy" / "manifests" / "namespace.yaml").read_text(), "\n---\n".join(crds) + "\n", strip(rest)]
    return (license_header + "\n---\n".join(parts)).encode()


def _envoy_gateway(v: Versions) -> bytes:
    """install.yaml as Envoy Gateway's release makes it (module docstring): the CRDs chart, then the chart."""
    charts = module_dir("envoy-gateway", v) / "charts"
    tag = v.envoy_gateway_module
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("gateway-helm", "gateway-crds-helm"):
            copy = shutil.copytree(charts / name, Path(tmp) / name, copy_function=shutil.copyfile)
            for d in (copy, *(p for p in copy.rglob("*") if p.is_dir())):
                d.chmod(0o755)  # the module cache is read-only; the copy must be writable (and removable)
        chart = Path(tmp) / "gateway-helm"
        values = (chart / "values.tmpl.yaml").read_text()  # envsubst of the two variables helm.mk sets
        values = values.replace("${GatewayImage}", f"envoyproxy/gateway:{tag}").replace("${GatewayImagePullPolicy}", "IfNotPresent")
        (chart / "values.yaml").write_text(values)
        crds = _helm("template", "eg-crds", str(Path(tmp) / "gateway-crds-helm"),
                     "--set", "crds.gatewayAPI.enabled=true", "--set", "crds.envoyGateway.enabled=true")
        rest = _helm("template", "--set", "createNamespace=true", "--set", "crds.gatewayAPI.safeUpgradePolicy.enabled=false",
                     "eg", str(chart), "--namespace", "envoy-gateway-system")
    return (crds + rest).encode()


@functools.lru_cache(maxsize=1)
def _helm_binary() -> Path:
    """helm, built once from its pinned Go module into the Go build cache's neighbourhood."""
    module, version = HELM
    download(module, version)
    gobin = Path(subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout.strip()).parent / "bin" / f"mlops-tests-helm-{version}"
    binary = gobin / "helm"
    if not binary.is_file():
        proc = subprocess.run(["go", "install", f"{module}/cmd/helm@{version}"], env={**os.environ, "GOBIN": str(gobin), "GOWORK": "off"},
                              cwd=tempfile.gettempdir(), capture_output=True, text=True, timeout=1800)
        if proc.returncode:
            raise UpstreamUnavailable(f"cannot build helm {version} from {module}: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return binary


def _helm(*args: str) -> str:
    proc = subprocess.run([str(_helm_binary()), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HELM_CACHE_HOME": tempfile.gettempdir() + "/mlops-tests-helm-cache"})
    if proc.returncode:
        raise UpstreamUnavailable(f"helm {args[0]} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return proc.stdout


def documents(data: bytes) -> list[dict[str, Any]]:
    """The objects of a manifest (empty documents left out), parsed with libyaml where PyYAML has it."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [d for d in yaml.load_all(data, Loader=loader) if d]

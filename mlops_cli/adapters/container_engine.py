"""The container engine that builds and pushes our images: docker buildx, podman or buildah.

An engine counts only when it can build right now: the docker CLI with its buildx plugin *and* a daemon
that answers (`docker info`), `podman info` succeeding, or `buildah version` succeeding. A docker CLI
whose daemon is down is not an engine; `detect()` says why each candidate was passed over.

Command-line facts relied on:
- `docker buildx build --metadata-file F` writes {"containerimage.digest": "sha256:..."} for what it
  pushed; `--sbom=true` attaches an SPDX SBOM attestation and `--provenance` a SLSA one, both only on
  push (the classic image store cannot hold attestations). (docker/buildx docs/reference/buildx_build.md)
- `podman push --digestfile F` and `buildah push --digestfile F` write the pushed manifest's digest.
- `<engine> login --username U --password-stdin HOST` reads the password from stdin, never argv.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..common.errors import MlopsError, PreflightError

ENGINES = ("docker buildx", "podman", "buildah")
PROBE_TIMEOUT_S = 15


@dataclass(frozen=True)
class Engine:
    name: str     # one of ENGINES
    binary: str   # absolute path of docker / podman / buildah

    @property
    def sbom(self) -> bool:
        return self.name == "docker buildx"

    def build_command(self, *, dockerfile: Path, context: Path, tag: str, build_args: dict[str, str],
                      push: bool, metadata_file: Path | None = None, platforms: str = "",
                      cache_dir: str = "") -> list[str]:
        """`platforms` ("linux/amd64,linux/arm64"): one image index for all, buildx and push only (the local
        image store holds one platform). `cache_dir`: buildx's local layer cache, read and written (CI keeps it)."""
        args = [f"--build-arg={k}={v}" for k, v in sorted(build_args.items())]
        if self.name == "docker buildx":
            cmd = [self.binary, "buildx", "build", "--file", str(dockerfile), "--tag", tag, *args]
            if platforms and push:
                cmd += ["--platform", platforms]
            if cache_dir:
                cmd += ["--cache-from", f"type=local,src={cache_dir}", "--cache-to", f"type=local,dest={cache_dir},mode=max"]
            if push:
                cmd += ["--push", "--sbom=true", "--provenance=mode=max", "--metadata-file", str(metadata_file)]
            else:
                cmd += ["--load"]
            return [*cmd, str(context)]
        return [self.binary, "build", "--file", str(dockerfile), "--tag", tag, *args, str(context)]

    def push_command(self, tag: str, digest_file: Path) -> list[str] | None:
        """None for docker buildx, which pushes as part of the build."""
        if self.name == "docker buildx":
            return None
        return [self.binary, "push", "--digestfile", str(digest_file), tag]

    def login_command(self, host: str, username: str) -> list[str]:
        return [self.binary, "login", "--username", username, "--password-stdin", host]

    def size_command(self, tag: str) -> list[str] | None:
        """Bytes of a local image (`docker|podman image inspect --format {{.Size}}`); None: buildah has no such field."""
        if self.name == "buildah":
            return None
        return [self.binary, "image", "inspect", "--format", "{{.Size}}", tag]


def detect(preferred: str | None = None) -> Engine:
    """The first engine that can build now (docker buildx, podman, buildah), or PreflightError naming all."""
    reasons: list[str] = []
    for name in ENGINES:
        if preferred and name.split()[0] != preferred.split()[0]:
            continue
        engine, why = _probe(name)
        if engine:
            return engine
        reasons.append(f"{name}: {why}")
    looked = ", ".join(ENGINES) if not preferred else preferred
    raise PreflightError(
        f"no container engine to build images with (looked for {looked}):\n    " + "\n    ".join(reasons),
        hint="install Docker with the buildx plugin (and start the daemon), podman or buildah; "
             "or let CI build them (.github/workflows/release.yml)")


def _probe(name: str) -> tuple[Engine | None, str]:
    binary = shutil.which(name.split()[0])
    if binary is None:
        return None, "not installed"
    if name == "docker buildx":
        ok, why = _answers([binary, "info", "--format", "{{.ServerVersion}}"])
        if not ok:
            return None, f"the daemon does not answer ({why})"
        ok, why = _answers([binary, "buildx", "version"])
        if not ok:
            return None, f"the buildx plugin does not answer ({why})"
        return Engine(name, binary), ""
    ok, why = _answers([binary, "info"] if name == "podman" else [binary, "version"])
    return (Engine(name, binary), "") if ok else (None, f"does not answer ({why})")


def _answers(cmd: Sequence[str]) -> tuple[bool, str]:
    try:
        result = subprocess.run(list(cmd), capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return False, f"no answer in {PROBE_TIMEOUT_S} s"
    except OSError as exc:
        return False, exc.strerror or str(exc)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        return False, lines[-1][:200] if lines else f"exit {result.returncode}"
    return True, ""


def run(cmd: Sequence[str], *, log: Path, what: str, stdin: str | None = None, timeout_s: float = 3600) -> str:
    """Run an engine command, appending its output to `log`; MlopsError (exit 1) with the last lines on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        try:
            result = subprocess.run(list(cmd), input=stdin, capture_output=True, text=True, timeout=timeout_s,
                                    stdin=None if stdin is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise MlopsError(f"{what}: no result after {timeout_s:.0f} s", hint=f"see {log}") from None
        fh.write(result.stdout)
        fh.write(result.stderr)
    if result.returncode != 0:
        tail = "\n    ".join((result.stderr or result.stdout).strip().splitlines()[-8:])
        raise MlopsError(f"{what} failed (exit {result.returncode}):\n    {tail}", hint=f"full output in {log}")
    return result.stdout


def pushed_digest(engine: Engine, file: Path) -> str:
    """The digest an engine wrote after pushing (buildx metadata JSON, or podman/buildah digest file)."""
    try:
        text = file.read_text().strip()
    except OSError:
        raise MlopsError(f"{engine.name} reported no digest for the push ({file} missing)") from None
    digest = json.loads(text).get("containerimage.digest", "") if engine.name == "docker buildx" else text
    if not digest.startswith("sha256:") or len(digest) != len("sha256:") + 64:
        raise MlopsError(f"{engine.name} reported an unexpected digest {digest!r} in {file}")
    return digest


def scratch_file(prefix: str) -> Path:
    handle = tempfile.NamedTemporaryFile(prefix=prefix, suffix=".json", delete=False)
    handle.close()
    return Path(handle.name)

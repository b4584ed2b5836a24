"""Sign every pushed image digest keyless with cosign and attest the SBOM BuildKit attached to it.

Reads the record `mlops images build --push` writes ({"gateway": "<registry>/mlops-gateway@sha256:...", ...})
and, for each image, by digest only (a tag can be moved after signing; a digest cannot):

    cosign sign --yes <ref@sha256:...>
    docker buildx imagetools inspect <ref@sha256:...> --format '{{ json (index .SBOM "<platform>").SPDX }}'
    cosign attest --yes --type spdxjson --predicate <that SPDX file> <ref@sha256:...>

Keyless: cosign takes the workflow's OIDC token (the job needs `id-token: write`), gets a short-lived
certificate from Sigstore's Fulcio and logs the signature in Rekor; no key exists to leak
(sigstore/cosign README, "Keyless signing"). BuildKit's `--sbom=true` stores one SPDX document per
platform in the image index (docker/buildx docs/reference/buildx_imagetools_inspect.md, "--format").
Verify with: cosign verify <ref@sha256:...> --certificate-identity-regexp '^https://github.com/<owner>/<repo>/'
--certificate-oidc-issuer https://token.actions.githubusercontent.com

    python scripts/sign_images.py .mlops/images.json [--platforms linux/amd64,linux/arm64] [--dry-run]

Exit 1 on a record entry that is not a digest reference, or on a failed command (named).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

DIGEST_REF = re.compile(r"^[a-z0-9][a-z0-9.:/_-]*@sha256:[0-9a-f]{64}$")
PLATFORMS = ("linux/amd64", "linux/arm64")


def digest_refs(record: dict[str, str]) -> list[str]:
    refs = []
    for component, ref in sorted(record.items()):
        if not isinstance(ref, str) or not DIGEST_REF.match(ref):
            raise ValueError(f"{component}: {ref!r} is not a pushed digest (<registry>/<name>@sha256:<64 hex>); "
                             "sign only what `mlops images build --push` recorded")
        refs.append(ref)
    return refs


def sbom_command(ref: str, platform: str) -> list[str]:
    return ["docker", "buildx", "imagetools", "inspect", ref, "--format", f'{{{{ json (index .SBOM "{platform}").SPDX }}}}']


def sign_command(ref: str) -> list[str]:
    return ["cosign", "sign", "--yes", ref]


def attest_command(ref: str, predicate: Path) -> list[str]:
    return ["cosign", "attest", "--yes", "--type", "spdxjson", "--predicate", str(predicate), ref]


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("+ " + " ".join(cmd), flush=True)
    result = subprocess.run(cmd, **kwargs)
    if result.returncode != 0:
        raise SystemExit(f"sign_images: `{' '.join(cmd[:3])}` failed for {cmd[-1]} (exit {result.returncode})")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("record", type=Path)
    parser.add_argument("--platforms", default=",".join(PLATFORMS))
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)
    try:
        refs = digest_refs(json.loads(args.record.read_text()))
    except (OSError, ValueError) as exc:
        print(f"sign_images: {exc}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        for ref in refs:
            if args.dry_run:
                print(" ".join(sign_command(ref)))
            else:
                _run(sign_command(ref))
            for platform in filter(None, args.platforms.split(",")):
                predicate = Path(tmp) / f"{ref.rsplit('/', 1)[-1].replace('@', '-').replace(':', '-')}-{platform.replace('/', '-')}.spdx.json"
                if args.dry_run:
                    print(" ".join(sbom_command(ref, platform)))
                    print(" ".join(attest_command(ref, predicate)))
                    continue
                sbom = _run(sbom_command(ref, platform), capture_output=True, text=True).stdout
                if not sbom.strip() or sbom.strip() == "null":
                    raise SystemExit(f"sign_images: no SBOM for {platform} in {ref} (was it built with --sbom=true?)")
                predicate.write_text(sbom)
                _run(attest_command(ref, predicate))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

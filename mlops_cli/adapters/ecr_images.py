"""Our images in ECR: which are there already (by tag, with their digests), and the repositories a push needs.

DescribeImages with `imageIds=[{"imageTag": T}]` answers the image's `imageDigest`, or fails with
ImageNotFoundException / RepositoryNotFoundException (ECR API reference). A push to ECR needs its repository
to exist first (ECR user guide, "Pushing a Docker image"); `mlops images build --push` creates a missing one
with the stack's own settings (immutable tags, scan on push), and the stack adopts it later
(adapters/aws_existing.py). botocore is imported inside functions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..common.errors import MlopsError, PreflightError
from .ecr_login import ecr_region
from .pulumi_aws_account import CREDENTIALS_HINT, _client

MISSING = ("ImageNotFoundException", "RepositoryNotFoundException")


def _repository(registry: str, component: str) -> str:
    namespace = registry.split("/", 1)[1] if "/" in registry else ""
    return f"{namespace}/mlops-{component}" if namespace else f"mlops-{component}"


@contextlib.contextmanager
def _aws_errors(what: str) -> Iterator[None]:
    """botocore's failures as ours: missing credentials are the caller's setup (PreflightError, exit 2, as
    ecr_login and eks_token say it); anything else AWS answered is a failure of the step."""
    import botocore.exceptions

    try:
        yield
    except (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError):
        raise PreflightError(f"no AWS credentials found to {what}", hint=CREDENTIALS_HINT) from None
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise MlopsError(f"could not {what}: {exc}", hint=CREDENTIALS_HINT) from None


def pushed_digests(registry: str, components: tuple[str, ...], tag: str) -> dict[str, str]:
    """{component: "<registry>/mlops-<component>@sha256:..."} for each image ECR holds under `tag`."""
    import botocore.exceptions

    region = ecr_region(registry)
    if region is None:
        return {}
    found: dict[str, str] = {}
    with _aws_errors(f"look for the platform's images in {registry}"):
        _, ecr = _client("ecr", region)
        for component in components:
            try:
                detail = ecr.describe_images(repositoryName=_repository(registry, component),
                                             imageIds=[{"imageTag": tag}])["imageDetails"][0]
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in MISSING:
                    continue
                raise
            found[component] = f"{registry}/mlops-{component}@{detail['imageDigest']}"
    return found


def ensure_repositories(registry: str, components: tuple[str, ...], tags: dict[str, str] | None = None) -> list[str]:
    """Create the repositories a push to this ECR registry needs; returns the names created."""
    import botocore.exceptions

    region = ecr_region(registry)
    if region is None:
        return []
    created = []
    with _aws_errors(f"create the ECR repositories in {registry}"):
        _, ecr = _client("ecr", region)
        for component in components:
            name = _repository(registry, component)
            try:
                ecr.create_repository(repositoryName=name, imageTagMutability="IMMUTABLE",
                                      imageScanningConfiguration={"scanOnPush": True},
                                      tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()])
                created.append(name)
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "RepositoryAlreadyExistsException":
                    raise
    return created

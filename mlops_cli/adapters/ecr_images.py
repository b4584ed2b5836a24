"""Our images in ECR: which are there already (by tag, with their digests), and the repositories a push needs.

DescribeImages with `imageIds=[{"imageTag": T}]` answers the image's `imageDigest`, or fails with
ImageNotFoundException / RepositoryNotFoundException (ECR API reference). A push to ECR needs its repository
to exist first (ECR user guide, "Pushing a Docker image"); `mlops images build --push` creates a missing one
with the stack's own settings (immutable tags, scan on push), and the stack adopts it later
(adapters/aws_existing.py). botocore is imported inside functions.
"""

from __future__ import annotations

from ..common.errors import MlopsError, PreflightError
from .ecr_login import ecr_region
from .pulumi_aws_account import CREDENTIALS_HINT, _client

MISSING = ("ImageNotFoundException", "RepositoryNotFoundException")


def _repository(registry: str, component: str) -> str:
    namespace = registry.split("/", 1)[1] if "/" in registry else ""
    return f"{namespace}/mlops-{component}" if namespace else f"mlops-{component}"


def pushed_digests(registry: str, components: tuple[str, ...], tag: str) -> dict[str, str]:
    """{component: "<registry>/mlops-<component>@sha256:..."} for each image ECR holds under `tag`."""
    import botocore.exceptions

    region = ecr_region(registry)
    if region is None:
        return {}
    found: dict[str, str] = {}
    try:
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
    except (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError):
        raise PreflightError(f"no AWS credentials found to look for the platform's images in {registry}",
                             hint=CREDENTIALS_HINT) from None
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise MlopsError(f"could not look for the platform's images in {registry}: {exc}", hint=CREDENTIALS_HINT) from None
    return found


def ensure_repositories(registry: str, components: tuple[str, ...], tags: dict[str, str] | None = None) -> list[str]:
    """Create the repositories a push to this ECR registry needs; returns the names created."""
    import botocore.exceptions

    region = ecr_region(registry)
    if region is None:
        return []
    created = []
    try:
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
    except (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError):
        # the caller's setup, not a failure of AWS: exit 2 like every other missing credential
        raise PreflightError(f"no AWS credentials found to create the ECR repositories in {registry}",
                             hint=CREDENTIALS_HINT) from None
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise MlopsError(f"could not create the ECR repositories in {registry}: {exc}", hint=CREDENTIALS_HINT) from None
    return created

"""ECR repositories for every image we build (charts/image_refs.py: gateway, drift, predictor, mlflow).

Tags are immutable, so a version tag always names the image that was scanned and deployed; every
push is scanned for known CVEs. Images are rebuildable from source, so `down` may delete them.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from charts.image_refs import COMPONENTS  # the image contract: `mlops images build --push` pushes each one


def namespace(project: str) -> str:
    """The project name as an ECR namespace: lowercase letters and digits, single separators between them.

    ECR's CreateRepository accepts `(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*`, 2-256
    characters (API reference, CreateRepository repositoryName); a project named "Review Sentiment" is not.
    """
    ascii_only = unicodedata.normalize("NFKD", project).encode("ascii", "ignore").decode().lower()
    words = re.findall(r"[a-z0-9]+", ascii_only)
    return "-".join(words)[:200].strip("-") or "mlops"


def repository_name(project: str, component: str) -> str:
    """<namespace>/mlops-<component>: the image contract's `{registry}/mlops-{component}` with the registry
    being `<account>.dkr.ecr.<region>.amazonaws.com/<namespace>`."""
    return f"{namespace(project)}/mlops-{component}"


# What a repository someone made by hand may have set otherwise: kept as found in the run that imports it
# (the engine copies ignored inputs from the read state; pulumi/pulumi developer-docs/architecture/import.md),
# set to ours by the next `up`, which no longer adopts it.
_REPOSITORY_SETTINGS = ["imageTagMutability", "imageScanningConfiguration", "tags", "forceDelete",
                        "encryptionConfigurations"]


def adopted(parent: pulumi.Resource, import_id: str | None, settings: list[str]) -> pulumi.ResourceOptions:
    """Options of a resource that may exist already: imported by id (instead of a create that fails with
    *AlreadyExists), its settings taken as they are for that one run."""
    if import_id is None:
        return pulumi.ResourceOptions(parent=parent)
    return pulumi.ResourceOptions(parent=parent, import_=import_id, ignore_changes=settings)


@dataclass(frozen=True)
class RepositoriesArgs:
    project: str               # repository names are repository_name(project, component)
    tags: dict[str, str] = field(default_factory=dict)
    components: tuple[str, ...] = COMPONENTS
    adopt: tuple[str, ...] = ()   # names of repositories that exist already (pushed to before `up`): imported


class ImageRepositories(pulumi.ComponentResource):
    urls: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: RepositoriesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:ecr:ImageRepositories", name, None, opts)
        self.urls = {}
        for component in args.components:
            name_ = repository_name(args.project, component)
            repo = aws.ecr.Repository(
                f"{name}-{component}",
                name=name_,
                image_tag_mutability="IMMUTABLE",
                image_scanning_configuration={"scan_on_push": True},
                force_delete=True,
                tags=args.tags,
                opts=adopted(self, name_ if name_ in args.adopt else None, _REPOSITORY_SETTINGS),
            )
            self.urls[component] = repo.repository_url
        self.register_outputs({"urls": self.urls})

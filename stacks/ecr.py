"""ECR repositories for the images the platform runs (gateway, predictor, drift).

Tags are immutable, so a version tag always names the image that was scanned and deployed; every
push is scanned for known CVEs. Images are rebuildable from source, so `down` may delete them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

COMPONENTS = ("gateway", "predictor", "drift")


@dataclass(frozen=True)
class RepositoriesArgs:
    prefix: str                # repository names are <prefix>/<component>
    tags: dict[str, str] = field(default_factory=dict)
    components: tuple[str, ...] = COMPONENTS


class ImageRepositories(pulumi.ComponentResource):
    urls: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: RepositoriesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:ecr:ImageRepositories", name, None, opts)
        self.urls = {}
        for component in args.components:
            repo = aws.ecr.Repository(
                f"{name}-{component}",
                name=f"{args.prefix}/{component}",
                image_tag_mutability="IMMUTABLE",
                image_scanning_configuration={"scan_on_push": True},
                force_delete=True,
                tags=args.tags,
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.urls[component] = repo.repository_url
        self.register_outputs({"urls": self.urls})

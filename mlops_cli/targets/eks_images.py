"""The EKS target's images and adopted resources: what the install will pull, and what the stack takes over.

The platform's pods pull `<account>.dkr.ecr.<region>.amazonaws.com/<namespace>/mlops-<component>` from the
repositories the same stack creates. Empty repositories mean ImagePullBackOff and an install that fails after
its timeouts with the cluster billing, so `up` decides before anything is created:

- the images are in ECR already under the tag (`mlops images build --push` ran, here or in CI): their digests;
- a container engine answers here: built and pushed between the stack and the install, digests recorded;
- neither: `up` stops before creating anything, naming the two commands that get there.

The install then references every image by digest (charts/image_refs.py reads the record). Repositories a push
made first, and a returning user's log group, are adopted by the stack (adapters/aws_existing.py).

`EksImages` is a part of `EksTarget` (targets/eks.py), which gives it `config` and `eks`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..adapters import aws_existing, container_engine, ecr_images
from ..cloud.eks_records import recorded_outputs
from ..common.errors import MlopsError, PreflightError
from ..common.progress import Reporter

IN_ECR, BUILD, MISSING = "in ECR", "build and push", "missing"


@dataclass
class ImagePlan:
    action: str                  # IN_ECR, BUILD or MISSING
    registry: str
    tag: str
    digests: dict[str, str] = field(default_factory=dict)
    engine: Any = None
    why: str = ""

    def describe(self) -> str:
        if self.action == IN_ECR:
            return f"in ECR already ({self.registry}, tag {self.tag}): installed by digest"
        if self.action == BUILD:
            return (f"built with {self.engine.name} and pushed to {self.registry} (tag {self.tag}) after the stack, "
                    "before the install; installed by digest")
        return f"not built: {self.why}"

    def refusal(self) -> PreflightError:
        return PreflightError(
            f"the platform's images are not in ECR ({self.registry}, tag {self.tag}) and none can be built here "
            f"({self.why.splitlines()[0]}); the install would pull from empty repositories. Nothing was created. "
            "Run these two commands:\n"
            f"    1. on a machine with docker buildx, podman or buildah (or in CI), in this project:\n"
            f"       MLOPS_IMAGES__REGISTRY={self.registry} mlops images build --push --tag {self.tag}\n"
            f"    2. here: mlops up --target eks",
            hint="the push creates the ECR repositories; `up` adopts them and installs the pushed digests")


class EksImages:
    def _registry(self, account: str) -> str:
        from stacks.ecr import namespace

        return f"{account}.dkr.ecr.{self.eks.region}.amazonaws.com/{namespace(self.config.project.name)}"

    def _image_plan(self, account: str) -> ImagePlan:
        from charts.image_refs import COMPONENTS

        from ..cloud.images import resolve_tag

        if not self.eks.ecr_enabled:
            raise PreflightError("eks.ecr_enabled = false: the install would have no registry to pull our images from",
                                 hint="set eks.ecr_enabled = true (the stack makes the ECR repositories)")
        registry, tag = self._registry(account), resolve_tag(self.config, None)
        digests = ecr_images.pushed_digests(registry, COMPONENTS, tag)
        if set(digests) == set(COMPONENTS):
            return ImagePlan(IN_ECR, registry, tag, digests=digests)
        try:
            return ImagePlan(BUILD, registry, tag, engine=container_engine.detect())
        except PreflightError as exc:
            return ImagePlan(MISSING, registry, tag, why=exc.message)

    def _provide_images(self, plan: ImagePlan, outputs: dict[str, Any], reporter: Reporter) -> str:
        """Push (or record) the images into the stack's registry; returns that registry."""
        from charts.image_refs import COMPONENTS, image_ref

        from ..cloud import images

        registry = outputs.get("images_registry") or plan.registry
        config = self.config.with_overrides({"images.registry": registry})
        if plan.action == BUILD:
            reporter.info(f"building and pushing {len(COMPONENTS)} images to {registry} ({plan.engine.name})")
            images.build_images(config, tag=plan.tag, push=True, engine=plan.engine, reporter=reporter)
        elif plan.action == IN_ECR:
            images.write_record(config, plan.digests)
        refs = {c: image_ref(config, c) for c in COMPONENTS}
        wrong = [r for r in refs.values() if not (r.startswith(f"{registry}/") and "@sha256:" in r)]
        if wrong:
            raise MlopsError(f"the install would run images that are not digests in {registry}: {', '.join(wrong)}",
                             hint=f"MLOPS_IMAGES__REGISTRY={registry} mlops images build --push, then re-run `up`")
        return registry

    def _find_existing(self) -> aws_existing.Existing:
        """Repositories and the log group that exist outside the stack (not ones it made: those are in its outputs)."""
        from charts.image_refs import COMPONENTS
        from stacks.cluster import log_group_name
        from stacks.ecr import repository_name

        mine = recorded_outputs(self.config)
        repos = [repository_name(self.config.project.name, c) for c in COMPONENTS
                 if c not in (mine.get("ecr_urls") or {})] if self.eks.ecr_enabled else []
        group = log_group_name(self.eks.cluster_name)
        found = aws_existing.find(self.eks.region, repos, "" if mine.get("log_group") == group else group)
        return found

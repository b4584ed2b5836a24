"""The `eks` target: provision EKS with the Pulumi program in `stacks/`, then install the platform on it.

`up`: preflight (Pulumi CLI, secrets, which AWS account) -> preview table + cost estimate ->
confirmation -> update streamed resource by resource -> kubeconfig (0600) and outputs recorded ->
the Kubernetes target installs the platform into the new cluster.
`down`: confirmation (type the stack name) -> platform removed from the cluster first (its cloud load
balancers hold ENIs in the VPC) -> destroy, keeping a bucket that holds data unless --delete-data.
The phases live apart: checks and sizing in eks_preflight.py, `down` in eks_teardown.py; what is kept on
disk between runs in cloud/eks_records.py.

Nothing is created or changed in AWS before the user confirms; the preview only reads.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from ..adapters import pulumi_aws_account, pulumi_workspace
from ..adapters.pulumi_workspace import ResourceStep
from ..cloud.eks_records import recorded_outputs, recorded_outputs_path
from ..common.atomic_file import write_atomically
from ..common.errors import MlopsError, NotFoundError
from ..common.progress import Reporter
from ..config.settings import Config
from .base import ComponentStatus, Confirm, DeployOptions, Outcome, StepResult, UpOptions
from .eks_images import MISSING, EksImages, ImagePlan
from .eks_preflight import EksPreflight
from .eks_teardown import EksTeardown
CHANGE_COLUMNS = ("resource type", "create", "update", "replace", "delete", "unchanged")
_REPLACE_OPS = {"replace", "create-replacement", "delete-replaced", "discard-replaced"}


def plan(steps: list[ResourceStep]) -> list[ResourceStep]:
    """One step per resource (a replacement shows up as several engine steps), classified by what happens."""
    by_urn: dict[str, list[ResourceStep]] = defaultdict(list)
    for step in steps:
        by_urn[step.urn or f"{step.type}::{step.name}"].append(step)
    out = []
    for group in by_urn.values():
        ops = {s.op for s in group}
        first = next((s for s in group if s.op not in ("delete", "delete-replaced")), group[0])
        op = "replace" if ops & _REPLACE_OPS else first.op
        out.append(ResourceStep(op=op, type=first.type, name=first.name, urn=first.urn, inputs=first.inputs,
                                status=group[-1].status))
    return out


def change_rows(steps: list[ResourceStep]) -> list[tuple[Any, ...]]:
    counts: dict[str, Counter] = defaultdict(Counter)
    for step in steps:
        column = {"same": "unchanged", "read": "unchanged"}.get(step.op, step.op)
        counts[step.type][column] += 1
    return [(rtype, *(counts[rtype][c] or "" for c in CHANGE_COLUMNS[1:])) for rtype in sorted(counts)]


def platform_overrides(config: Config, kubeconfig: Path, outputs: dict[str, Any]) -> dict[str, Any]:
    """What the platform install on this cluster takes from the stack: where the cluster is, the bucket and
    the IRSA roles, the default StorageClass, and the ECR repositories as `[images] registry`."""
    overrides: dict[str, Any] = {"kubernetes.kubeconfig": str(kubeconfig), "kubernetes.context": ""}
    if outputs.get("bucket_name"):
        overrides["kubernetes.mlflow_artifacts"] = f"s3://{outputs['bucket_name']}/mlflow"
    if outputs.get("irsa_role_arn"):
        overrides["kubernetes.mlflow_role_arn"] = outputs["irsa_role_arn"]
    if outputs.get("predictor_role_arn"):
        overrides["kubernetes.predictor_role_arn"] = outputs["predictor_role_arn"]
    if outputs.get("storage_class"):
        overrides["kubernetes.storage_class"] = outputs["storage_class"]
    if outputs.get("images_registry"):
        overrides["images.registry"] = outputs["images_registry"]
    return overrides


def local_token_command(kubeconfig: Any) -> dict[str, Any]:
    """The stack's kubeconfig with its `mlops eks-token` plugin pointed at this machine's `mlops` (the stack
    recorded the path of the machine that ran `up`)."""
    from ..adapters.eks_token import TOKEN_COMMAND, mlops_command

    data = json.loads(kubeconfig) if isinstance(kubeconfig, str) else kubeconfig
    for user in data.get("users") or []:
        exec_ = (user.get("user") or {}).get("exec") or {}
        if (exec_.get("args") or [None])[0] == TOKEN_COMMAND:
            exec_["command"] = mlops_command()
    return data


def write_kubeconfig(path: Path, kubeconfig: Any) -> Path:
    """Write the cluster's kubeconfig readable by the owner only (it grants cluster access)."""
    text = json.dumps(local_token_command(kubeconfig), indent=2)
    # A fresh 0600 file replaces the old one, so wider permissions of an earlier file do not carry over.
    write_atomically(path, text, perms=0o600)
    return path


class EksTarget(EksPreflight, EksImages, EksTeardown):
    name = "eks"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.eks = config.eks
        self._existing = None   # what `up` found outside the stack to adopt (adapters/aws_existing.py)

    def _open_stack(self, *, create: bool) -> pulumi_workspace.StackWorkspace:
        """The stack, with the Pulumi program (stacks/program.py) that `up` runs on it."""
        from stacks.program import inline

        return pulumi_workspace.open_stack(self.config, inline(self.config, self._existing), create=create)

    # ----------------------------------------------------------------------- up

    def up(self, options: UpOptions, reporter: Reporter, confirm: Confirm) -> Outcome:
        if options.dry_run:
            raise MlopsError("--dry-run is for the kubernetes target", hint="use `mlops up --target eks --preview`")
        self._require_supported_version(reporter)
        identity = self._preflight(reporter)
        self._require_gpu_quota(reporter, strict=not options.preview)
        self._resolve_endpoint_access(reporter)
        self._size_node_group(reporter, strict=not options.preview)
        images = self._image_plan(identity.account if identity else "")
        if images.action == MISSING and not options.preview:
            raise images.refusal()
        self._existing = self._find_existing()
        workspace = self._open_stack(create=True)

        reporter.start("preview", f"pulumi preview (stack {workspace.name})")
        steps = plan(workspace.preview(lambda s: reporter.update("preview", resource=f"{s.type} {s.name}")))
        to_change = [s for s in steps if s.changes]
        reporter.finish("preview", f"{len(to_change)} to change, {len(steps) - len(to_change)} unchanged")
        estimate = self._estimate(steps)
        plan_rows = self._plan_rows(images, len(to_change))
        reporter.table(f"Plan: mlops up --target eks ({self.eks.region}), in this order", ("step", "what"), plan_rows)
        reporter.table(f"Pulumi preview: stack {workspace.name} ({self.eks.region})", CHANGE_COLUMNS, change_rows(steps))
        reporter.table(estimate.title, estimate.columns, estimate.rows())
        for note in estimate.notes:
            reporter.info(note)
        if images.action == MISSING:
            reporter.warn(f"`up` would stop here: {images.refusal().message}")

        info: dict[str, Any] = {
            "stack": workspace.name, "account": identity.account if identity else "", "region": self.eks.region,
            "to_change": len(to_change), "estimated_hourly_usd": round(estimate.hourly, 4),
            "estimated_monthly_usd": round(estimate.monthly, 2),
            "preview": [dict(zip(CHANGE_COLUMNS, row)) for row in change_rows(steps)],
            "cost_estimate": estimate.as_dict(),
            "plan": [dict(zip(("step", "what"), row)) for row in plan_rows], "images": images.describe(),
        }
        if options.preview:
            info["result"] = "preview only: nothing was created or changed"
            return Outcome(info=info)
        if to_change and not options.yes:
            account = f" in AWS account {identity.account}" if identity else ""
            if not confirm(f"Apply {len(to_change)} changes to stack {workspace.name}{account} ({self.eks.region})?"):
                raise MlopsError("not confirmed: nothing was created or changed",
                                 hint="answer y at the prompt, or pass --yes")

        outputs = self._apply(workspace, len(to_change), reporter)
        kubeconfig = write_kubeconfig(self.config.path(self.eks.kubeconfig_path), outputs.get("kubeconfig", ""))
        recorded = self._record(outputs, kubeconfig, identity)
        result_steps = [StepResult(row[0], "changed", " ".join(f"{c}={v}" for c, v in zip(CHANGE_COLUMNS[1:], row[1:]) if v))
                        for row in change_rows(steps) if any(row[1:5])]
        result_steps.append(StepResult("kubeconfig", "written", f"{kubeconfig} (0600)"))
        registry = self._provide_images(images, outputs, reporter)
        result_steps.append(StepResult("images", "pushed" if images.action != "in ECR" else "in ECR",
                                       f"{registry}, by digest"))
        platform_steps, platform_info = self._install_platform(kubeconfig, recorded, reporter, confirm)
        # The platform's own facts (ingress, and a generated gateway password: shown once, then only in the
        # cluster's Secret) would otherwise be lost behind the stack's outputs.
        return Outcome(steps=result_steps + platform_steps,
                       info={**_flat(recorded), **platform_info, "stack": workspace.name,
                             "estimated_monthly_usd": info["estimated_monthly_usd"]})

    def _plan_rows(self, images: ImagePlan, to_change: int) -> list[tuple[str, str]]:
        """What `up` does, in order: the stack, what the cluster gets, the images, the install."""
        from ..cloud.eks_versions import autoscaler_chart

        chart, app = autoscaler_chart(self.eks.version)
        rows = [("1. AWS stack", f"{to_change} resources to create or change (Pulumi preview below)"),
                ("2. cluster add-ons", "vpc-cni (NetworkPolicy enforced), kube-proxy, coredns, aws-ebs-csi-driver "
                                       "+ gp3 StorageClass, metrics-server (for the gateway's HPA)"),
                ("3. Cluster Autoscaler", f"chart cluster-autoscaler {chart} (app {app}) for Kubernetes {self.eks.version}")]
        if self._gpu_requested():
            rows.append(("3. GPU node group", f"{self.eks.gpu_instance_types[0]} and the NVIDIA device plugin"))
        rows += [("4. images", images.describe()),
                 ("5. platform install", "the kubernetes target on the new cluster (its own steps, each waited on)")]
        return rows

    def _override(self, **values: Any) -> None:
        self.config = self.config.with_overrides({f"eks.{k}": v for k, v in values.items()})
        self.eks = self.config.eks

    def _apply(self, workspace: pulumi_workspace.StackWorkspace, total: int, reporter: Reporter) -> dict[str, Any]:
        reporter.start("up", f"pulumi up (stack {workspace.name})", total=total or None)

        def progress(step: ResourceStep) -> None:
            if not step.changes or step.status == "planned":
                return
            if step.status == "failed":
                reporter.warn(f"{step.op} failed: {step.type} {step.name}")
                return
            reporter.advance("up", 1, resource=step.name)
            reporter.info(f"  {step.op:<8} {step.type} {step.name}")

        outputs = workspace.up(progress)
        reporter.finish("up", "done")
        return outputs

    def _record(self, outputs: dict[str, Any], kubeconfig: Path,
                identity: pulumi_aws_account.AwsIdentity | None) -> dict[str, Any]:
        recorded = {k: v for k, v in outputs.items() if k != "kubeconfig"}
        recorded.update(stack=self.eks.stack, kubeconfig_path=str(kubeconfig),
                        account=identity.account if identity else "",
                        updated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        write_atomically(recorded_outputs_path(self.config), json.dumps(recorded, indent=2) + "\n")
        return recorded

    # --------------------------------------------------------- the platform on top

    def _platform_target(self, kubeconfig: Path, outputs: dict[str, Any]):
        """The Kubernetes target aimed at this cluster, or None when that target is not installed."""
        try:
            from .kubernetes import KubernetesTarget
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.kubernetes":
                raise
            return None
        return KubernetesTarget(self.config.with_overrides(platform_overrides(self.config, kubeconfig, outputs)))

    def _install_platform(self, kubeconfig: Path, outputs: dict[str, Any], reporter: Reporter,
                          confirm: Confirm) -> tuple[list[StepResult], dict[str, Any]]:
        target = self._platform_target(kubeconfig, outputs)
        if target is None:
            return [StepResult("platform", "skipped",
                               "platform install skipped: the kubernetes target is unavailable")], {}
        reporter.info(f"installing the platform into cluster {outputs.get('cluster_name', '')}")
        try:
            outcome = target.up(UpOptions(yes=True), reporter, confirm)
        except MlopsError as exc:
            raise MlopsError(f"the EKS cluster is up (kubeconfig {kubeconfig}) but the platform install failed: "
                             f"{exc.message}", hint=exc.hint or "fix it and re-run `mlops up --target eks` "
                             "(the stack is left as it is)") from None
        return [StepResult(f"platform/{s.name}", s.action, s.detail) for s in outcome.steps], dict(outcome.info)

    def _kubeconfig_for(self, outputs: dict[str, Any]) -> Path:
        path = self.config.path(self.eks.kubeconfig_path)
        if not path.is_file() and outputs.get("kubeconfig"):
            write_kubeconfig(path, outputs["kubeconfig"])
        return path

    # ------------------------------------------------------------------- status

    def status(self) -> list[ComponentStatus]:
        self._preflight(Reporter(), aws=False)
        try:
            workspace = self._open_stack(create=False)
        except NotFoundError as exc:
            return [ComponentStatus(f"stack {self.eks.stack}", detail=f"{exc.message}: run `mlops up --target eks`",
                                    expected=False)]
        outputs = workspace.outputs()
        last = workspace.last_update()
        when = (last.ended or last.started) if last else ""
        rows = [ComponentStatus(
            f"stack {workspace.name}", healthy=bool(last and last.result == "succeeded"), version=self.eks.version,
            detail=f"last update: {last.kind} {last.result} at {when}" if last else "never updated")]
        for key, value in _flat({k: v for k, v in outputs.items() if k != "kubeconfig"}).items():
            # outputs are facts about the stack, not processes: an empty one is not a failure
            rows.append(ComponentStatus(key, healthy=bool(value), detail=str(value), expected=False))
        kubeconfig = self.config.path(self.eks.kubeconfig_path)
        rows.append(ComponentStatus("kubeconfig", healthy=kubeconfig.is_file(), expected=False,
                                    detail=str(kubeconfig) if kubeconfig.is_file() else f"{kubeconfig} (not written)"))
        return rows

    # --------------------------------------- serving: the Kubernetes target on EKS

    def _serving(self):
        outputs = recorded_outputs(self.config)
        kubeconfig = self.config.path(self.eks.kubeconfig_path)
        if not kubeconfig.is_file():
            raise NotFoundError(f"no EKS kubeconfig at {kubeconfig}", hint="run `mlops up --target eks` first")
        target = self._platform_target(kubeconfig, outputs)
        if target is None:
            raise MlopsError("the kubernetes target is unavailable, and EKS serves through it",
                             hint="install mlops with the kubernetes target (mlops_cli/targets/kubernetes.py)")
        return target

    def deploy(self, options: DeployOptions, reporter: Reporter) -> Outcome:
        return self._serving().deploy(options, reporter)

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        return self._serving().predict(texts)

    def logs(self, component: str, *, follow: bool = False, lines: int = 50) -> Iterator[str]:
        return self._serving().logs(component, follow=follow, lines=lines)


def _flat(outputs: dict[str, Any]) -> dict[str, Any]:
    """Nested outputs (ecr_urls) as flat keys, so the terminal shows each one."""
    flat: dict[str, Any] = {}
    for key, value in outputs.items():
        if isinstance(value, dict):
            flat.update({f"{key.removesuffix('_urls')}_{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat

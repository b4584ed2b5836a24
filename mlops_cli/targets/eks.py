"""The `eks` target: provision EKS with the Pulumi program in `stacks/`, then install the platform on it.

`up`: preflight (Pulumi CLI, secrets, which AWS account) -> preview table + cost estimate ->
confirmation -> update streamed resource by resource -> kubeconfig (0600) and outputs recorded ->
the Kubernetes target installs the platform into the new cluster.
`down`: confirmation (type the stack name) -> platform removed from the cluster first (its cloud load
balancers hold ENIs in the VPC) -> destroy, keeping a bucket that holds data unless --delete-data.

Nothing is created or changed in AWS before the user confirms; the preview only reads.
"""

from __future__ import annotations

import importlib.util
import json
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from ..adapters import aws_sweep, cluster_resources, pulumi_aws_account, pulumi_workspace
from ..adapters.pulumi_workspace import ResourceStep
from ..common.atomic_file import write_atomically
from ..config.settings import Config
from ..common.errors import MlopsError, NotFoundError, PreflightError
from ..common.progress import Reporter
from .base import ComponentStatus, Confirm, DeployOptions, DownOptions, Outcome, StepResult, UpOptions

SDK_MODULES = ("pulumi", "pulumi_aws", "pulumi_kubernetes")
GPU_QUOTA_CODE = "L-DB2E81BA"  # EC2 "Running On-Demand G and VT instances" (vCPUs)
STORAGE_COMPONENT = "mlops:storage:ArtifactBucket"
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


def recorded_outputs_path(config: Config) -> Path:
    return config.state_dir / "eks" / f"{config.eks.stack}.json"


def kept_bucket_path(config: Config) -> Path:
    """Where `down` notes the bucket it kept, so that the next `up` adopts it instead of failing on its name."""
    return config.state_dir / "eks" / f"{config.eks.stack}.kept-bucket.json"


def kept_bucket(config: Config) -> str:
    path = kept_bucket_path(config)
    return json.loads(path.read_text()).get("bucket", "") if path.is_file() else ""


def recorded_outputs(config: Config) -> dict[str, Any]:
    """What the last successful `mlops up --target eks` recorded (no secrets): {} if never."""
    path = recorded_outputs_path(config)
    return json.loads(path.read_text()) if path.is_file() else {}


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


class EksTarget:
    name = "eks"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.eks = config.eks

    # ----------------------------------------------------------------- preflight

    def _version_check(self):
        """The configured Kubernetes version against the dated EKS table (cloud/eks_versions.py)."""
        from ..platform.doctor import Check
        from ..cloud.eks_versions import SOURCE, Support, newest_in_standard, status

        st = status(self.eks.version)
        fix = f'set eks.version = "{newest_in_standard()}" in mlops.toml (in standard support; see {SOURCE})'
        if st.support is Support.STANDARD:
            return Check("EKS Kubernetes version", True, st.describe())
        if st.support is Support.EXTENDED:
            from ..cloud.cost_estimate import load_prices

            price = load_prices().hourly["eks_cluster_extended"]
            return Check("EKS Kubernetes version", False,
                         f"{st.describe()}: ${price:.2f} per cluster-hour instead of "
                         f"${load_prices().hourly['eks_cluster']:.2f}", fix, required=False)
        return Check("EKS Kubernetes version", False, st.describe(), fix)

    def _require_supported_version(self, reporter: Reporter) -> None:
        # Only `up` refuses: `down` and `status` must still work on a cluster whose version has aged out.
        version = self._version_check()
        if not version.ok and version.required:
            raise PreflightError(version.detail, hint=version.fix)
        if not version.ok:
            reporter.warn(f"{version.detail}; {version.fix}")

    def _preflight(self, reporter: Reporter, *, aws: bool = True) -> pulumi_aws_account.AwsIdentity | None:
        pulumi_workspace.require_cli()
        missing = [m for m in SDK_MODULES if importlib.util.find_spec(m) is None]
        if missing:
            raise PreflightError(f"Pulumi Python SDKs missing: {', '.join(missing)}",
                                 hint="pip install -e '.[cloud]' -c constraints.txt")
        pulumi_workspace.require_secrets(self.config)
        if not aws:
            return None
        identity = pulumi_aws_account.caller_identity(self.eks.region)
        reporter.info(f"AWS account {identity.account} as {identity.arn} "
                      f"(credentials: {identity.source or 'default chain'}), region {self.eks.region}")
        return identity

    def checks(self) -> list:
        from ..common.check import Check

        cli = pulumi_workspace.find_cli()
        checks = [self._version_check(), Check("pulumi CLI", cli is not None, cli or "not on PATH", "" if cli else pulumi_workspace.INSTALL_HINT)]
        try:
            pulumi_workspace.require_secrets(self.config)
            checks.append(Check("Pulumi secrets", True, pulumi_workspace.secrets_provider(self.config)))
        except PreflightError as exc:
            checks.append(Check("Pulumi secrets", False, exc.message, exc.hint or ""))
        try:
            who = pulumi_aws_account.caller_identity(self.eks.region)
            checks.append(Check("AWS credentials", True, f"account {who.account} ({who.arn}), region {who.region}"))
        except PreflightError as exc:
            checks.append(Check("AWS credentials", False, exc.message, exc.hint or ""))
        if self.eks.gpu_enabled:
            checks.append(self._gpu_quota_check())
        return checks

    def _gpu_quota_check(self):
        """New accounts may run 0 vCPUs of G and VT instances on demand (Service Quotas L-DB2E81BA); the GPU
        node group then never gets a node and the request to raise it takes a day or more."""
        from ..cloud.capacity import INSTANCES
        from ..platform.doctor import Check

        kind = self.eks.gpu_instance_types[0]
        need = INSTANCES.get(kind, (0,))[0] * max(self.eks.gpu_desired_size, 1)
        fix = (f"request at least {need or 'the needed'} vCPUs for 'Running On-Demand G and VT instances' "
               f"(quota code {GPU_QUOTA_CODE}) in Service Quotas, {self.eks.region}, before `up`")
        try:
            quota = pulumi_aws_account.service_quota("ec2", GPU_QUOTA_CODE, self.eks.region)
        except MlopsError as exc:
            return Check("GPU instance quota", False, f"could not read the quota ({exc.message}); new AWS accounts "
                         "have 0 vCPUs for G and VT instances", fix, required=False)
        ok = quota >= need > 0
        return Check("GPU instance quota", ok, f"{quota:g} vCPUs of G/VT instances allowed; {kind} x "
                     f"{max(self.eks.gpu_desired_size, 1)} needs {need}", "" if ok else fix, required=False)

    # ----------------------------------------------------------------------- up

    def up(self, options: UpOptions, reporter: Reporter, confirm: Confirm) -> Outcome:
        if options.dry_run:
            raise MlopsError("--dry-run is for the kubernetes target", hint="use `mlops up --target eks --preview`")
        self._require_supported_version(reporter)
        identity = self._preflight(reporter)
        self._resolve_endpoint_access(reporter)
        self._size_node_group(reporter, strict=not options.preview)
        workspace = pulumi_workspace.open_stack(self.config, create=True)

        reporter.start("preview", f"pulumi preview (stack {workspace.name})")
        steps = plan(workspace.preview(lambda s: reporter.update("preview", resource=f"{s.type} {s.name}")))
        to_change = [s for s in steps if s.changes]
        reporter.finish("preview", f"{len(to_change)} to change, {len(steps) - len(to_change)} unchanged")
        estimate = self._estimate(steps)
        reporter.table(f"Pulumi preview: stack {workspace.name} ({self.eks.region})", CHANGE_COLUMNS, change_rows(steps))
        reporter.table(estimate.title, estimate.columns, estimate.rows())
        for note in estimate.notes:
            reporter.info(note)

        info: dict[str, Any] = {
            "stack": workspace.name, "account": identity.account if identity else "", "region": self.eks.region,
            "to_change": len(to_change), "estimated_hourly_usd": round(estimate.hourly, 4),
            "estimated_monthly_usd": round(estimate.monthly, 2),
            "preview": [dict(zip(CHANGE_COLUMNS, row)) for row in change_rows(steps)],
            "cost_estimate": estimate.as_dict(),
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
        platform_steps, platform_info = self._install_platform(kubeconfig, recorded, reporter, confirm)
        # The platform's own facts (ingress, and a generated gateway password: shown once, then only in the
        # cluster's Secret) would otherwise be lost behind the stack's outputs.
        return Outcome(steps=result_steps + platform_steps,
                       info={**_flat(recorded), **platform_info, "stack": workspace.name,
                             "estimated_monthly_usd": info["estimated_monthly_usd"]})

    def _override(self, **values: Any) -> None:
        self.config = self.config.with_overrides({f"eks.{k}": v for k, v in values.items()})
        self.eks = self.config.eks

    def _resolve_endpoint_access(self, reporter: Reporter) -> None:
        """The API endpoint's public CIDRs: configured ones, else this machine's egress address /32."""
        cidrs = self.eks.public_access_cidrs
        if not cidrs:
            address = pulumi_aws_account.egress_address()
            cidrs = [f"{address}/32"]
            reporter.info(f"API endpoint: public access from your egress address {cidrs[0]} only (and privately "
                          "from inside the VPC); set eks.public_access_cidrs to widen it")
            self._override(public_access_cidrs=cidrs)
        if "0.0.0.0/0" in cidrs:
            reporter.warn("eks.public_access_cidrs includes 0.0.0.0/0: the cluster's API endpoint is reachable "
                          "from the whole internet (authentication still applies); list your own CIDRs instead")

    def _size_node_group(self, reporter: Reporter, *, strict: bool) -> None:
        """Compare the platform's requests with the general node group; size it up, or refuse, before creating it."""
        from ..cloud.capacity import DoesNotFit, plan_nodes

        kind = self.eks.instance_types[0]
        try:
            requests = self._platform_requests()
        except MlopsError as exc:
            if strict:
                raise MlopsError(f"cannot size the node group: rendering the platform failed: {exc.message}",
                                 hint=exc.hint) from None
            reporter.warn(f"capacity not checked in this preview (rendering the platform failed: {exc.message})")
            return
        try:
            plan = plan_nodes(requests, kind)
        except KeyError:
            reporter.warn(f"no allocatable figures for {kind} (cloud/capacity.py INSTANCES): capacity not checked")
            return
        except DoesNotFit as exc:
            raise PreflightError(f"the platform does not fit on {kind} nodes: {exc}",
                                 hint="set a larger eks.instance_types") from None
        if plan.nodes_needed > self.eks.max_size:
            raise PreflightError(f"{plan.summary()}, but eks.max_size = {self.eks.max_size}",
                                 hint=f"set eks.max_size (and desired_size) to at least {plan.nodes_needed}, "
                                      "or a larger instance type")
        if plan.nodes_needed > self.eks.desired_size:
            reporter.warn(f"{plan.summary()}: starting with {plan.nodes_needed} nodes instead of eks.desired_size = "
                          f"{self.eks.desired_size}")
            self._override(desired_size=plan.nodes_needed)
        else:
            reporter.info(f"capacity: {plan.summary()}; {self.eks.desired_size} configured")

    def _platform_requests(self):
        """Requests of exactly what the install applies (charts.platform), plus one predictor replica."""
        from charts.objects import resources
        from charts.platform import all_objects

        from ..cloud.capacity import platform_requests

        return platform_requests(all_objects(self.config, None), resources(self.config, "predictor"))

    def _estimate(self, steps: list[ResourceStep]):
        from ..cloud.cost_estimate import UsageAssumptions, estimate, load_prices

        usage = UsageAssumptions(nat_gb_month=self.eks.estimate_nat_gb_month, log_gb_month=self.eks.estimate_log_gb_month,
                                 zones=self.eks.availability_zones)
        return estimate(steps, load_prices(), region=self.eks.region, usage=usage)

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

    # --------------------------------------------------------------------- down

    def down(self, options: DownOptions, reporter: Reporter, confirm: Confirm) -> Outcome:
        identity = self._preflight(reporter)
        workspace = pulumi_workspace.open_stack(self.config, create=False)
        outputs = workspace.outputs()
        cluster = outputs.get("cluster_name") or self.eks.cluster_name
        if not options.yes:
            question = (f"Destroy EKS stack {workspace.name} (cluster {cluster}, its VPC and nodes) in AWS account "
                        f"{identity.account if identity else '?'}?")
            if not confirm(question, expect=workspace.name):
                raise MlopsError("not confirmed: nothing was removed or destroyed",
                                 hint=f"type the stack name ({workspace.name}) at the prompt, or pass --yes")

        held = self._cloud_backed_objects(outputs, reporter)
        steps = self._remove_platform(workspace, outputs, reporter, confirm)
        steps += self._release_cloud_resources(outputs, cluster, held, reporter)
        steps += self._settle_bucket(workspace, outputs.get("bucket_name", ""), options, reporter)
        aws = aws_sweep.Aws(self.eks.region)
        try:
            self._destroy(workspace, reporter)
        except MlopsError as first:
            # A leftover the wait did not see (a load balancer of a Service deleted earlier, say) blocks the VPC:
            # remove what is tagged as the cluster's, then try once more.
            reporter.warn(f"destroy failed ({first.message}); removing what Kubernetes left in AWS and retrying")
            steps += self._sweep(aws, cluster, reporter)
            self._destroy(workspace, reporter)
        steps += self._sweep(aws, cluster, reporter)
        for stale in (recorded_outputs_path(self.config), self.config.path(self.eks.kubeconfig_path)):
            stale.unlink(missing_ok=True)
        steps.append(StepResult(f"stack {workspace.name}", "destroyed", self.eks.region))
        return Outcome(steps=steps, info={"stack": workspace.name})

    def _destroy(self, workspace: pulumi_workspace.StackWorkspace, reporter: Reporter) -> None:
        reporter.start("destroy", f"pulumi destroy (stack {workspace.name})")

        def progress(step: ResourceStep) -> None:
            if step.status == "done":
                reporter.advance("destroy", 1, resource=step.name)
                reporter.info(f"  deleted  {step.type} {step.name}")
            elif step.status == "failed":
                reporter.warn(f"delete failed: {step.type} {step.name}")

        try:
            workspace.destroy(progress)
        except MlopsError as exc:
            raise MlopsError(exc.message, hint=exc.hint or "if a subnet or the VPC will not delete, a load balancer "
                             "created from inside the cluster may still hold it: delete it, then re-run") from None
        reporter.finish("destroy", "done")

    def _sweep(self, aws, cluster: str, reporter: Reporter) -> list[StepResult]:
        report = aws_sweep.sweep(aws, cluster)
        steps = [StepResult(f"{item.kind} {item.id}", "removed",
                            f"tagged {aws_sweep.cluster_tag(cluster)}" + (f" ({item.detail})" if item.detail else ""))
                 for item in report.removed]
        for step in steps:
            reporter.info(f"  removed  {step.name}: {step.detail}")
        if report.failed:
            raise aws_sweep.describe_failure(report)
        return steps

    def _cloud_backed_objects(self, outputs: dict[str, Any], reporter: Reporter) -> tuple[set[str], set[str]]:
        """LoadBalancer Services and PVCs, listed before the platform goes (its removal deletes some of them)."""
        if not outputs.get("cluster_name"):
            return set(), set()
        try:
            return cluster_resources.inventory(self._kubeconfig_for(outputs))
        except MlopsError as exc:
            reporter.warn(f"could not list the cluster's load balancers and volumes ({exc.message}); "
                          "what they left in AWS is swept after destroy")
            return set(), set()

    def _release_cloud_resources(self, outputs: dict[str, Any], cluster: str, held: tuple[set[str], set[str]],
                                 reporter: Reporter) -> list[StepResult]:
        """Delete every LoadBalancer Service and PVC (after the platform's pods are gone: a PVC in use stays),
        then wait until AWS has released the load balancers and volumes they held: otherwise they outlive the
        cluster and block the VPC's deletion."""
        services, claims = held
        if not services and not claims:
            return []
        try:
            cluster_resources.delete_and_wait(self._kubeconfig_for(outputs), services, claims,
                                              timeout_s=self.eks.release_timeout_s, interval_s=self.eks.release_poll_s)
        except MlopsError as exc:
            reporter.warn(f"could not empty the cluster ({exc.message}); what it left is swept after destroy")
            return [StepResult("cluster resources", "failed", exc.message)]
        steps = [StepResult(f"Service {s}", "deleted", "type LoadBalancer") for s in sorted(services)]
        steps += [StepResult(f"PersistentVolumeClaim {c}", "deleted") for c in sorted(claims)]
        reporter.start("release", "waiting for AWS to release the load balancers and volumes")
        still = aws_sweep.wait_released(
            aws_sweep.Aws(self.eks.region), cluster, services, claims, timeout_s=self.eks.release_timeout_s,
            interval_s=self.eks.release_poll_s,
            on_wait=lambda h: reporter.update("release", resource=f"{len(h)} still held"))
        reporter.finish("release", "released" if not still else f"{len(still)} still held")
        if still:
            reporter.warn(f"AWS still holds {', '.join(f'{h.kind} {h.id}' for h in still)} after "
                          f"{self.eks.release_timeout_s:g} s; destroying anyway, the sweep removes them after")
        steps.append(StepResult("AWS resources of the cluster", "released" if not still else "still held",
                                ", ".join(f"{h.kind} {h.id}" for h in still)))
        return steps

    def _remove_platform(self, workspace: pulumi_workspace.StackWorkspace, outputs: dict[str, Any],
                         reporter: Reporter, confirm: Confirm) -> list[StepResult]:
        if not outputs.get("cluster_name"):
            return []
        target = self._platform_target(self._kubeconfig_for(outputs), outputs)
        if target is None:
            reporter.warn("the kubernetes target is unavailable: the in-cluster platform was not removed first")
            return [StepResult("platform", "skipped", "kubernetes target unavailable; not removed before destroy")]
        reporter.info("removing the platform from the cluster first (its load balancers live in the VPC)")
        try:
            outcome = target.down(DownOptions(purge=True, yes=True), reporter, confirm)
        except MlopsError as exc:
            reporter.warn(f"removing the platform failed ({exc.message}); destroying anyway")
            return [StepResult("platform", "failed", exc.message)]
        return [StepResult(f"platform/{s.name}", s.action, s.detail) for s in outcome.steps]

    def _settle_bucket(self, workspace: pulumi_workspace.StackWorkspace, bucket: str, options: DownOptions,
                       reporter: Reporter) -> list[StepResult]:
        """Keep the bucket (out of the stack, settings intact; the next `up` adopts it) unless --purge deletes it."""
        if not bucket:
            return []
        if options.purge or options.delete_data:
            deleted = 0
            if pulumi_aws_account.bucket_has_data(bucket, self.eks.region):
                deleted = pulumi_aws_account.empty_bucket(bucket, self.eks.region)
            kept_bucket_path(self.config).unlink(missing_ok=True)
            return [StepResult(f"bucket {bucket}", "deleted", f"{deleted} object versions deleted first (--purge)")]
        workspace.forget(STORAGE_COMPONENT)
        path = kept_bucket_path(self.config)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"bucket": bucket, "region": self.eks.region}) + "\n")
        message = (f"kept bucket s3://{bucket} (MLflow artifacts, DVC remote) out of the stack; the next "
                   f"`mlops up --target eks` takes it back. To delete it: `mlops down --target eks --purge`, "
                   f"or `aws s3 rb s3://{bucket} --force`")
        reporter.warn(message)
        return [StepResult(f"bucket {bucket}", "kept", "pass --purge to delete it")]

    # ------------------------------------------------------------------- status

    def status(self) -> list[ComponentStatus]:
        self._preflight(Reporter(), aws=False)
        try:
            workspace = pulumi_workspace.open_stack(self.config, create=False)
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

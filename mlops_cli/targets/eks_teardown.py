"""`mlops down --target eks`: the platform out of the cluster first, what it held in AWS released, then the
stack destroyed, keeping a bucket that holds data unless --purge / --delete-data.

`EksTeardown` is a part of `EksTarget` (targets/eks.py), which gives it `config`, `eks`, `_preflight`,
`_open_stack`, `_platform_target` and `_kubeconfig_for`.
"""

from __future__ import annotations

import json
from typing import Any

from ..adapters import aws_sweep, cluster_resources, pulumi_aws_account, pulumi_workspace
from ..adapters.pulumi_workspace import ResourceStep
from ..cloud.eks_records import kept_bucket_path, recorded_outputs_path
from ..common.errors import MlopsError
from ..common.progress import Reporter
from .base import Confirm, DownOptions, Outcome, StepResult

STORAGE_COMPONENT = "mlops:storage:ArtifactBucket"


class EksTeardown:
    def down(self, options: DownOptions, reporter: Reporter, confirm: Confirm) -> Outcome:
        identity = self._preflight(reporter)
        workspace = self._open_stack(create=False)
        outputs = workspace.outputs()
        cluster = outputs.get("cluster_name") or self.eks.cluster_name
        if not options.yes:
            question = (f"Destroy EKS stack {workspace.name} (cluster {cluster}, its VPC and nodes) in AWS account "
                        f"{identity.account if identity else '?'}?")
            if not confirm(question, expect=workspace.name):
                raise MlopsError("not confirmed: nothing was removed or destroyed",
                                 hint=f"type the stack name ({workspace.name}) at the prompt, or pass --yes")

        steps = self._open_endpoint(outputs, reporter)
        held = self._cloud_backed_objects(outputs, reporter)
        retained = self._retained_claims(outputs, reporter)
        # Volumes of claims whose PV says Retain stay; unknown (the PV list failed): no volume is swept.
        claims = held[1] - retained if retained is not None else set()
        steps += self._remove_platform(workspace, outputs, reporter, confirm)
        steps += self._release_cloud_resources(outputs, cluster, held, claims, reporter)
        steps += self._settle_bucket(workspace, outputs.get("bucket_name", ""), options, reporter)
        aws = aws_sweep.Aws(self.eks.region)
        scope = aws_sweep.Scope(cluster, outputs.get("vpc_id", ""), frozenset(claims))
        try:
            self._destroy(workspace, reporter)
        except MlopsError as first:
            # A leftover the wait did not see (a load balancer of a Service deleted earlier, say) blocks the VPC:
            # remove what the cluster left in its VPC (never its security groups while it exists), then retry.
            reporter.warn(f"destroy failed ({first.message}); removing what Kubernetes left in AWS and retrying")
            steps += self._sweep(aws, scope, reporter)
            self._destroy(workspace, reporter)
        steps += self._sweep(aws, scope, reporter)
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

    def _sweep(self, aws, scope: aws_sweep.Scope, reporter: Reporter) -> list[StepResult]:
        if not scope.vpc_id:
            reporter.warn("the stack recorded no VPC: nothing is swept (look for resources tagged "
                          f"{aws_sweep.cluster_tag(scope.cluster)} = owned in the EC2 console)")
            return []
        report = aws_sweep.sweep(aws, scope, timeout_s=self.eks.release_timeout_s, interval_s=self.eks.release_poll_s)
        tag = f"{aws_sweep.cluster_tag(scope.cluster)} = owned, in {scope.vpc_id}"
        steps = [StepResult(f"{item.kind} {item.id}", "removed", tag + (f" ({item.detail})" if item.detail else ""))
                 for item in report.removed]
        steps += [StepResult(f"{item.kind} {item.id}", "kept", why) for item, why in report.kept]
        for step in steps:
            reporter.info(f"  {step.action:<8} {step.name}: {step.detail}")
        if report.failed:
            raise aws_sweep.describe_failure(report)
        return steps

    def _open_endpoint(self, outputs: dict[str, Any], reporter: Reporter) -> list[StepResult]:
        """The API endpoint opened to this machine's address before any cluster call: `up` may have run from
        another network, and every call would time out (adapters/eks_endpoint.py)."""
        from ..adapters import eks_endpoint

        cluster = outputs.get("cluster_name")
        if not cluster:
            return []
        try:
            address = pulumi_aws_account.egress_address()
            access = eks_endpoint.allow_address(eks_endpoint.eks_client(self.eks.region), cluster, address,
                                                timeout_s=self.eks.release_timeout_s, interval_s=self.eks.release_poll_s)
        except MlopsError as exc:
            reporter.warn(f"could not open the API endpoint to this machine ({exc.message}); the cluster may be "
                          "unreachable, and what it holds in AWS is swept after destroy")
            return [StepResult("API endpoint", "failed", exc.message)]
        if not access.opened:
            return []
        reporter.info(f"API endpoint of {cluster}: opened to your address {access.opened} (it allowed "
                      f"{', '.join(c for c in access.cidrs if c != access.opened) or 'nothing public'}), so that "
                      "`down` can empty the cluster")
        return [StepResult("API endpoint", "opened", f"to {access.opened}")]

    def _retained_claims(self, outputs: dict[str, Any], reporter: Reporter) -> set[str] | None:
        if not outputs.get("cluster_name"):
            return set()
        try:
            return cluster_resources.retained_claims(self._kubeconfig_for(outputs))
        except MlopsError as exc:
            reporter.warn(f"could not list the cluster's volumes ({exc.message}); no volume is swept")
            return None

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
                                 released_claims: set[str], reporter: Reporter) -> list[StepResult]:
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
            aws_sweep.Aws(self.eks.region), cluster, services, claims & released_claims,
            timeout_s=self.eks.release_timeout_s, interval_s=self.eks.release_poll_s,
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

"""The EKS target before anything is created: its checks (Pulumi, secrets, AWS account, Kubernetes version,
GPU quota), and the sizing of what `up` will ask for (API endpoint access, node count, cost estimate).

`EksPreflight` is a part of `EksTarget` (targets/eks.py), which gives it `config`, `eks` and `_override`.
"""

from __future__ import annotations

import importlib.util

from ..adapters import pulumi_aws_account, pulumi_workspace
from ..adapters.pulumi_workspace import ResourceStep
from ..common.check import Check
from ..common.errors import MlopsError, PreflightError
from ..common.progress import Reporter

SDK_MODULES = ("pulumi", "pulumi_aws", "pulumi_kubernetes")
GPU_QUOTA_CODE = "L-DB2E81BA"  # EC2 "Running On-Demand G and VT instances" (vCPUs)
GPU_UNUSED = ("eks.gpu_enabled is set but nothing requests nvidia.com/gpu ([serving] device is \"cpu\"): "
              "no GPU node group is created")


class EksPreflight:
    def _version_check(self):
        """The configured Kubernetes version against the dated EKS table (cloud/eks_versions.py)."""
        from ..cloud.eks_versions import SOURCE, Support, newest_in_standard, status

        st = status(self.eks.version)
        fix = f'set eks.version = "{newest_in_standard()}" in mlops.toml (in standard support; see {SOURCE})'
        if st.support is Support.STANDARD:
            return Check("EKS Kubernetes version", True, st.describe())
        if st.support is Support.UNKNOWN:
            # Newer than the table (EKS releases a minor every four months): EKS itself decides; say what we lack.
            return Check("EKS Kubernetes version", False, f"{st.describe()}: its support dates and autoscaler chart "
                         "are not checked", "add it to mlops_cli/cloud/eks_versions.py", required=False)
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
        if self._gpu_requested():
            checks.append(self._gpu_quota_check())
        elif self.eks.gpu_enabled:
            checks.append(Check("GPU node group", False, GPU_UNUSED, 'set [serving] device = "cuda"', required=False))
        return checks

    def _gpu_requested(self) -> bool:
        from charts.objects import requests_gpu

        return requests_gpu(self.config)

    def _require_gpu_quota(self, reporter: Reporter, *, strict: bool) -> None:
        """`up` with a GPU pool: a quota below what the pool needs would leave it without nodes (the node group
        waits, then fails); refused before anything is created. An unreadable quota is only a warning."""
        if not self._gpu_requested():
            if self.eks.gpu_enabled:
                reporter.warn(GPU_UNUSED)
            return
        check = self._gpu_quota_check()
        if check.ok:
            reporter.info(f"GPU quota: {check.detail}")
        elif strict and check.detail.split(" ")[0].replace(".", "", 1).isdigit():
            raise PreflightError(f"GPU node group: {check.detail}", hint=check.fix)
        else:
            reporter.warn(f"GPU node group: {check.detail}; {check.fix}")

    def _gpu_quota_check(self):
        """New accounts may run 0 vCPUs of G and VT instances on demand (Service Quotas L-DB2E81BA); the GPU
        node group then never gets a node and the request to raise it takes a day or more."""
        from ..cloud.capacity import INSTANCES

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
        from ..cloud.capacity import DoesNotFit, plan_nodes, vpc_address_shortfall

        kind = self.eks.instance_types[0]
        short = vpc_address_shortfall(self.eks.vpc_cidr, self.eks.availability_zones, kind, self.eks.max_size)
        if short:
            raise PreflightError(f"the VPC is too small for its pods: {short}",
                                 hint="set eks.vpc_cidr to a larger block (10.0.0.0/16 gives /20 subnets), or lower "
                                      "eks.max_size")
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

        from charts.platform import all_objects

        from ..cloud.capacity import pvc_gib

        try:
            pvc = pvc_gib(all_objects(self.config, None))
        except MlopsError:
            pvc = 0.0   # rendering failed: the capacity step said so already
        usage = UsageAssumptions(nat_gb_month=self.eks.estimate_nat_gb_month, log_gb_month=self.eks.estimate_log_gb_month,
                                 zones=self.eks.availability_zones, pvc_gb=round(pvc, 1),
                                 log_retention_days=self.eks.log_retention_days,
                                 cross_az_gb_month=self.eks.estimate_cross_az_gb_month)
        return estimate(steps, load_prices(), region=self.eks.region, usage=usage)

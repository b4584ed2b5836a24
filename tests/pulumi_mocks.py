"""The Pulumi program in stacks/ run under pulumi's mocks: `declare(**eks_fields)` builds it once and returns
every resource it declared (type, name, inputs) and what it exported. The mocks answer with the ids,
names, ARNs and versions a real provider computes, so the program's wiring between resources can be read,
and they refuse, as AWS would, an aws:* resource whose API call the pinned botocore models reject or that
names a Kubernetes version EKS no longer offers (tests/aws_api.py); `declare` raises aws_api.Refused then."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

pulumi = pytest.importorskip("pulumi")

from pulumi.runtime.mocks import MockMonitor  # noqa: E402

from mlops_cli.config.cluster_sections import EksConfig  # noqa: E402

PROJECT, STACK, NAMESPACE = "test-project", "dev", "mlops"
ISSUER = "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
EGRESS = ["203.0.113.7/32"]
# Zone names map to different zone ids in each account; here us-east-1a is use1-az3, where EKS refuses
# control-plane subnets and newer instance types are not offered.
ZONES = {"us-east-1a": "use1-az3", "us-east-1b": "use1-az1", "us-east-1c": "use1-az2", "us-east-1d": "use1-az4",
         "us-east-1e": "use1-az6", "us-east-1f": "use1-az5"}
# DescribeInstanceTypeOfferings by availability-zone-id (an illustrative subset of us-east-1).
OFFERINGS = {
    "m6i.large": {"use1-az1", "use1-az2", "use1-az4", "use1-az5", "use1-az6"},
    "m6i.xlarge": {"use1-az1", "use1-az2", "use1-az4", "use1-az5", "use1-az6"},
    "g5.xlarge": {"use1-az2", "use1-az4", "use1-az6"},
    "g5.2xlarge": {"use1-az2", "use1-az4", "use1-az6"},
    "t3.medium": {"use1-az1", "use1-az2", "use1-az3", "use1-az4", "use1-az6"},
}


def irsa_trust(namespace: str, service_account: str) -> dict[str, Any]:
    """The whole trust policy of an IRSA role: that one service account, through the cluster's OIDC provider,
    for the STS audience (EKS user guide, "Assign IAM roles to Kubernetes service accounts",
    docs.aws.amazon.com/eks/latest/userguide/associate-service-account-role.html)."""
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Federated": f"arn:aws:iam::123456789012:oidc-provider/{ISSUER}"},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {f"{ISSUER}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                                       f"{ISSUER}:aud": "sts.amazonaws.com"}},
    }]}


# Names the provider makes up when the program gives none (Pulumi auto-naming: the logical name and a
# random suffix; terraform's name_prefix: the prefix and a unique id): property -> how it is made.
AUTO_NAMES = {
    "aws:iam/role:Role": "name", "aws:iam/rolePolicy:RolePolicy": "name",
    "aws:ec2/launchTemplate:LaunchTemplate": "name",
}


def _suffix(name: str, length: int = 7) -> str:
    import hashlib

    return hashlib.sha256(name.encode()).hexdigest()[:length]


class Mocks(pulumi.runtime.Mocks):
    """Records every resource; refuses, as AWS would, any aws:* resource whose API call the pinned botocore
    models reject (tests/aws_api.py); answers with the ids, names, ARNs and versions a real provider computes."""

    def __init__(self, today=None, existing: dict[str, set[str]] | None = None) -> None:
        from tests.aws_api import REFERENCE_DATE, Account

        self.resources: list[Any] = []
        self.calls: list[Any] = []
        self.refused: list[str] = []
        self.account = Account(today or REFERENCE_DATE, existing=existing or {})

    def new_resource(self, args):
        self.resources.append(args)
        state = dict(args.inputs)
        if args.typ in AUTO_NAMES:
            state.setdefault(AUTO_NAMES[args.typ], f"{args.name}-{_suffix(args.name)}")
        if args.typ == "aws:eks/nodeGroup:NodeGroup" and "nodeGroupName" not in state:
            state["nodeGroupName"] = state.get("nodeGroupNamePrefix", "") + _suffix(args.name, 26)
        if args.typ == "aws:s3/bucket:Bucket" and "bucket" not in state:
            state["bucket"] = args.inputs["bucketPrefix"] + "a1b2c3"
        if args.typ.startswith("aws:") and args.resource_id:
            self._import(args.typ, args.name, args.resource_id)   # the provider reads it; nothing is created
        elif args.typ.startswith("aws:"):
            self._as_aws_would(args.typ, args.name, state)
        state.setdefault("arn", f"arn:aws:mock:::{args.name}")
        if args.typ == "aws:eks/cluster:Cluster":
            # What CreateCluster/DescribeCluster answer: endpoint, CA, the OIDC issuer (EKS API reference).
            state.update(endpoint="https://EXAMPLE.gr7.us-east-1.eks.amazonaws.com",
                         certificateAuthority={"data": "LS0tLS1CRUdJTi=="},
                         identities=[{"oidcs": [{"issuer": f"https://{ISSUER}"}]}])
        elif args.typ == "aws:s3/bucket:Bucket":
            state["arn"] = f"arn:aws:s3:::{state['bucket']}"
        elif args.typ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
            state["arn"] = f"arn:aws:iam::123456789012:oidc-provider/{ISSUER}"
        elif args.typ == "aws:ecr/repository:Repository":
            state["repositoryUrl"] = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{args.inputs['name']}"
        elif args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
            # A new launch template is version 1 (terraform-provider-aws ec2 launch_template: latest_version).
            state.update(latestVersion=1, defaultVersion=1)
            self.account.templates[args.resource_id or f"{args.name}-id"] = 1
        return [args.resource_id or f"{args.name}-id", state]

    def _import(self, typ: str, name: str, import_id: str) -> None:
        from tests.aws_api import Refused

        if import_id not in self.account.existing.get(typ, set()) and typ != "aws:s3/bucket:Bucket":
            self.refused.append(f"{typ} {name}: cannot import {import_id!r}: it does not exist")
            raise Refused(self.refused[-1])

    def _as_aws_would(self, typ: str, name: str, state: dict) -> None:
        from tests.aws_api import Refused, calls

        try:
            found = [p for call in calls(typ, state) for p in self.account.refusals(call, typ)]
        except Refused as exc:
            found = [str(exc)]
        if found:
            self.refused += [f"{typ} {name}: {p}" for p in found]
            raise Refused(f"AWS refuses {typ} {name}: " + "; ".join(found))

    def call(self, args):
        self.calls.append(args)
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            excluded = set(args.args.get("excludeZoneIds") or [])
            zones = {n: z for n, z in ZONES.items() if z not in excluded}
            return {"names": list(zones), "zoneIds": list(zones.values()), "id": "us-east-1"}
        if args.token == "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings":
            if args.args.get("locationType") != "availability-zone-id":
                raise ValueError("locations would be zone names, which differ per account")
            wanted = next(f["values"] for f in args.args["filters"] if f["name"] == "instance-type")
            pairs = [(t, z) for t in wanted for z in sorted(OFFERINGS.get(t, ()))]
            return {"instanceTypes": [t for t, _ in pairs], "locations": [z for _, z in pairs],
                    "locationTypes": ["availability-zone-id"] * len(pairs), "id": "us-east-1"}
        return {}


class FlatMonitor(MockMonitor):
    """A mock engine without resource references: a node group's `cluster`/`nodeRole` inputs arrive as
    URN/id strings instead of Resource objects, which the stock mock monitor would rehydrate on its
    own thread's event loop (and race the test's loop)."""

    def SupportsFeature(self, request):
        supported = request.id not in ("outputValues", "resourceReferences")
        return type("SupportsFeatureResponse", (object,), {"hasSupport": supported})

    def GetDeploymentInfo(self, request):
        from pulumi.runtime.proto import resource_pb2

        info = super().GetDeploymentInfo(request)
        features = [f for f in info.supportedFeatures if f != resource_pb2.RESOURCE_MONITOR_FEATURE_RESOURCE_REFERENCES]
        return resource_pb2.DeploymentInfo(supportedFeatures=features)


@dataclass
class Declared:
    resources: list[Any]
    outputs: dict[str, Any]
    secret_outputs: set[str] = field(default_factory=set)
    calls: list[Any] = field(default_factory=list)

    def of(self, typ: str) -> list[Any]:
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str, name_part: str = "") -> Any:
        found = [r for r in self.of(typ) if name_part in r.name]
        assert len(found) == 1, f"expected one {typ} {name_part!r}, got {[r.name for r in found]}"
        return found[0]


def declare(**eks_fields: Any) -> Declared:
    """Run the program once under fresh mocks and return what it declared and exported."""
    return declare_platform(**eks_fields)


def _ensure_event_loop() -> None:
    """Pulumi's runtime calls asyncio.get_event_loop(); after any earlier test's asyncio.run() (which
    ends with set_event_loop(None)) that raises "There is no current event loop" on Python 3.11."""
    import asyncio

    try:
        asyncio.get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())


def declare_platform(adopt_bucket: str = "", gpu: bool = False, existing: dict[str, set[str]] | None = None,
                     adopt: Any = None, **eks_fields: Any) -> Declared:
    """`gpu`: something the platform renders requests nvidia.com/gpu (what [serving].device = "cuda" does).
    `existing`: what the account holds outside the stack, by type ({"aws:ecr/repository:Repository": {name}}):
    creating it again is refused. `adopt`: what the target found of it (adapters/aws_existing.Existing)."""
    from stacks.program import Platform, build

    mocks = Mocks(existing=existing)
    _ensure_event_loop()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=STACK, preview=False, monitor=FlatMonitor(mocks))
    resolved: dict[str, Any] = {}
    secret: set[str] = set()

    eks_fields.setdefault("public_access_cidrs", EGRESS)  # what `up` resolves an empty list to

    @pulumi.runtime.test
    def run():
        outputs = build(EksConfig(**eks_fields), Platform(
            project=PROJECT, namespace=NAMESPACE, adopt_bucket=adopt_bucket, gpu=gpu,
            adopt_repositories=adopt.repositories if adopt else (), adopt_log_group=bool(adopt and adopt.log_group)))

        async def secrets() -> None:
            for key, out in outputs.items():
                if await out.is_secret():
                    secret.add(key)

        return pulumi.Output.all(pulumi.Output.from_input(secrets()), pulumi.Output.all(**outputs)).apply(
            lambda both: resolved.update(both[1]))

    run()
    if mocks.refused:
        # A refused registration does not always fail the mocked run (its outputs just never resolve): raise here.
        from tests.aws_api import Refused

        raise Refused("AWS refuses: " + " | ".join(mocks.refused))
    return Declared(mocks.resources, resolved, secret, mocks.calls)

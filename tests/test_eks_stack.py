"""The Pulumi program in stacks/, run under pulumi's mocks: what it declares and with which properties."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

pulumi = pytest.importorskip("pulumi")

from pulumi.runtime.mocks import MockMonitor  # noqa: E402

from mlops_cli.core.config import EksConfig  # noqa: E402

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
TAGGABLE = {
    "aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/internetGateway:InternetGateway", "aws:ec2/routeTable:RouteTable",
    "aws:ec2/eip:Eip", "aws:ec2/natGateway:NatGateway", "aws:iam/role:Role",
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider", "aws:s3/bucket:Bucket", "aws:ecr/repository:Repository",
    "aws:eks/cluster:Cluster", "aws:eks/nodeGroup:NodeGroup", "aws:ec2/launchTemplate:LaunchTemplate",
    "aws:cloudwatch/logGroup:LogGroup", "aws:eks/addon:Addon",
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


class Mocks(pulumi.runtime.Mocks):
    """Records every resource; answers with its inputs plus the ids/ARNs a real provider would compute."""

    def __init__(self) -> None:
        self.resources: list[Any] = []
        self.calls: list[Any] = []

    def new_resource(self, args):
        self.resources.append(args)
        state = dict(args.inputs)
        state.setdefault("arn", f"arn:aws:mock:::{args.name}")
        if args.typ == "aws:eks/cluster:Cluster":
            # What CreateCluster/DescribeCluster answer: endpoint, CA, the OIDC issuer (EKS API reference).
            state.update(endpoint="https://EXAMPLE.gr7.us-east-1.eks.amazonaws.com",
                         certificateAuthority={"data": "LS0tLS1CRUdJTi=="},
                         identities=[{"oidcs": [{"issuer": f"https://{ISSUER}"}]}])
        elif args.typ == "aws:s3/bucket:Bucket":
            name = args.inputs.get("bucket") or args.inputs["bucketPrefix"] + "a1b2c3"
            state.update(bucket=name, arn=f"arn:aws:s3:::{name}")
        elif args.typ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
            state["arn"] = f"arn:aws:iam::123456789012:oidc-provider/{ISSUER}"
        elif args.typ == "aws:ecr/repository:Repository":
            state["repositoryUrl"] = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{args.inputs['name']}"
        return [f"{args.name}-id", state]

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


def pulumi_eks_kubeconfig(name: str) -> dict[str, Any]:
    """The shape of the kubeconfig pulumi-eks generates (nodejs/eks/cluster.ts generateKubeconfig)."""
    return {"apiVersion": "v1", "kind": "Config", "current-context": "aws",
            "clusters": [{"name": "kubernetes", "cluster": {"server": "https://EXAMPLE.gr7.us-east-1.eks.amazonaws.com",
                                                         "certificate-authority-data": "LS0tLS1CRUdJTi=="}}],
            "contexts": [{"name": "aws", "context": {"cluster": "kubernetes", "user": "aws"}}],
            "users": [{"name": "aws", "user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1",
                                                       "command": "aws", "args": ["eks", "get-token", "--cluster-name", name]}}}]}


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


def declare_platform(adopt_bucket: str = "", **eks_fields: Any) -> Declared:
    from stacks.program import Platform, build

    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=STACK, preview=False, monitor=FlatMonitor(mocks))
    resolved: dict[str, Any] = {}
    secret: set[str] = set()

    eks_fields.setdefault("public_access_cidrs", EGRESS)  # what `up` resolves an empty list to

    @pulumi.runtime.test
    def run():
        outputs = build(EksConfig(**eks_fields), Platform(project=PROJECT, namespace=NAMESPACE, adopt_bucket=adopt_bucket))

        async def secrets() -> None:
            for key, out in outputs.items():
                if await out.is_secret():
                    secret.add(key)

        return pulumi.Output.all(pulumi.Output.from_input(secrets()), pulumi.Output.all(**outputs)).apply(
            lambda both: resolved.update(both[1]))

    run()
    return Declared(mocks.resources, resolved, secret, mocks.calls)


@pytest.fixture(scope="module")
def default() -> Declared:
    return declare()


def _ids(resources) -> set[str]:
    return {f"{r.name}-id" for r in resources}


def _subnets(d: Declared, kind: str) -> list[Any]:
    return [r for r in d.of("aws:ec2/subnet:Subnet") if f"-{kind}-" in r.name]


@pytest.mark.parametrize("zones", [2, 3])
def test_subnets_public_and_private_in_distinct_zones(zones):
    d = declare(availability_zones=zones)
    for kind in ("public", "private"):
        subnets = _subnets(d, kind)
        assert len(subnets) == zones
        assert len({s.inputs["availabilityZone"] for s in subnets}) == zones, kind
    vpc = ipaddress.ip_network(d.one("aws:ec2/vpc:Vpc").inputs["cidrBlock"])
    nets = [ipaddress.ip_network(s.inputs["cidrBlock"]) for s in d.of("aws:ec2/subnet:Subnet")]
    assert all(n.subnet_of(vpc) for n in nets)
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1:])
    assert all(s.inputs["mapPublicIpOnLaunch"] is False for s in _subnets(d, "private"))


def test_private_subnets_route_through_nat_and_public_through_igw(default):
    public_rt = default.one("aws:ec2/routeTable:RouteTable", "public")
    assert public_rt.inputs["routes"] == [{"cidrBlock": "0.0.0.0/0", "gatewayId": "network-igw-id"}]
    nat_ids = _ids(default.of("aws:ec2/natGateway:NatGateway"))
    private_rts = [r for r in default.of("aws:ec2/routeTable:RouteTable") if "private" in r.name]
    assert len(private_rts) == 2
    for rt in private_rts:
        assert [route.get("natGatewayId") for route in rt.inputs["routes"]] and \
            all(route["natGatewayId"] in nat_ids for route in rt.inputs["routes"])
    public_ids = _ids(_subnets(default, "public"))
    assert all(n.inputs["subnetId"] in public_ids for n in default.of("aws:ec2/natGateway:NatGateway"))


def test_nat_single_or_one_per_zone():
    assert len(declare(single_nat_gateway=True, availability_zones=3).of("aws:ec2/natGateway:NatGateway")) == 1
    per_az = declare(single_nat_gateway=False, availability_zones=3)
    nats = per_az.of("aws:ec2/natGateway:NatGateway")
    assert len(nats) == 3
    used = [r.inputs["routes"][0]["natGatewayId"] for r in per_az.of("aws:ec2/routeTable:RouteTable") if "private" in r.name]
    assert sorted(used) == sorted(_ids(nats))  # each private route table has its own zone's NAT


def test_cluster_version_and_endpoint_access_from_config():
    d = declare(version="1.30", public_access_cidrs=["203.0.113.0/24"])
    cluster = d.one("aws:eks/cluster:Cluster")
    assert cluster.inputs["version"] == "1.30"
    assert cluster.inputs["name"] == "mlops"
    vpc = cluster.inputs["vpcConfig"]
    assert vpc["endpointPrivateAccess"] is True and vpc["endpointPublicAccess"] is True
    assert vpc["publicAccessCidrs"] == ["203.0.113.0/24"]
    assert set(vpc["subnetIds"]) == _ids(_subnets(d, "private")) | _ids(_subnets(d, "public"))
    assert cluster.inputs["accessConfig"] == {"authenticationMode": "API", "bootstrapClusterCreatorAdminPermissions": True}
    assert cluster.inputs["enabledClusterLogTypes"] == ["api", "audit", "authenticator"]
    role = d.one("aws:iam/role:Role", "cluster-cluster")
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"] == {"Service": "eks.amazonaws.com"}
    assert {r.inputs["addonName"] for r in d.of("aws:eks/addon:Addon")} >= {"vpc-cni", "kube-proxy", "coredns"}


def test_no_public_cidrs_is_refused_by_the_program():
    # An empty list would make the endpoint private-only and the install from the user's machine impossible:
    # `up` resolves it to the user's egress address first (test_eks_cluster.py).
    with pytest.raises(Exception, match="public_access_cidrs is empty"):
        declare(public_access_cidrs=[])


def test_node_group_only_in_private_subnets_with_configured_size():
    d = declare(instance_types=["m6i.xlarge"], min_size=2, desired_size=3, max_size=5, disk_size_gb=80)
    groups = d.of("aws:eks/nodeGroup:NodeGroup")
    assert len(groups) == 1
    group = groups[0].inputs
    private, public = _ids(_subnets(d, "private")), _ids(_subnets(d, "public"))
    assert set(group["subnetIds"]) == private and not set(group["subnetIds"]) & public
    assert group["scalingConfig"] == {"minSize": 2, "desiredSize": 3, "maxSize": 5}
    assert group["instanceTypes"] == ["m6i.xlarge"]
    template = d.one("aws:ec2/launchTemplate:LaunchTemplate", "general").inputs
    assert template["blockDeviceMappings"][0]["ebs"]["volumeSize"] == 80
    assert not group.get("taints")


def test_gpu_on_adds_a_tainted_gpu_group():
    d = declare(gpu_enabled=True, gpu_instance_types=["g5.2xlarge"], gpu_min_size=0, gpu_desired_size=1, gpu_max_size=3)
    groups = {r.name: r.inputs for r in d.of("aws:eks/nodeGroup:NodeGroup")}
    assert set(groups) == {"cluster-general", "cluster-gpu"}
    gpu = groups["cluster-gpu"]
    assert gpu["instanceTypes"] == ["g5.2xlarge"]
    assert gpu["amiType"] == "AL2023_x86_64_NVIDIA"
    assert gpu["scalingConfig"] == {"minSize": 0, "desiredSize": 1, "maxSize": 3}
    assert gpu["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    assert set(gpu["subnetIds"]) == _ids(_subnets(d, "private"))
    assert len(d.resources) > len(declare().resources)  # gpu off declares fewer resources


def test_bucket_versioned_encrypted_private_tls_only_with_lifecycle():
    d = declare(noncurrent_version_days=45)
    bucket = d.one("aws:s3/bucket:Bucket")
    assert bucket.inputs["forceDestroy"] is False
    assert bucket.inputs["bucketPrefix"] == f"{PROJECT}-{STACK}-"
    bucket_id = f"{bucket.name}-id"
    versioning = d.one("aws:s3/bucketVersioning:BucketVersioning")
    assert versioning.inputs == {"bucket": bucket_id, "versioningConfiguration": {"status": "Enabled"}}
    sse = d.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    assert sse.inputs["bucket"] == bucket_id
    assert sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] in ("AES256", "aws:kms")
    block = d.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert block["bucket"] == bucket_id
    assert all(block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
    policy_res = d.one("aws:s3/bucketPolicy:BucketPolicy").inputs
    assert policy_res["bucket"] == bucket_id
    statements = json.loads(policy_res["policy"])["Statement"]
    arn = f"arn:aws:s3:::{d.outputs['bucket_name']}"
    assert any(s["Effect"] == "Deny" and s["Principal"] == "*" and s["Action"] == "s3:*"
               and set(s["Resource"]) == {arn, f"{arn}/*"}
               and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in statements)
    rules = d.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs["rules"]
    assert any(r["status"] == "Enabled" and r["noncurrentVersionExpiration"]["noncurrentDays"] == 45 for r in rules)


def test_bucket_name_from_config_when_given():
    d = declare(bucket_name="my-artifacts")
    assert d.one("aws:s3/bucket:Bucket").inputs["bucket"] == "my-artifacts"
    assert d.outputs["bucket_name"] == "my-artifacts"


def test_irsa_trusts_exactly_the_platform_service_account():
    d = declare(service_account="mlflow")
    provider = d.one("aws:iam/openIdConnectProvider:OpenIdConnectProvider").inputs
    assert provider["url"] == f"https://{ISSUER}"
    assert provider["clientIdLists"] == ["sts.amazonaws.com"]
    role = d.one("aws:iam/role:Role", "platform-irsa")
    assert json.loads(role.inputs["assumeRolePolicy"]) == irsa_trust(NAMESPACE, "mlflow")


def test_irsa_policy_scoped_to_exactly_the_bucket(default):
    policy = default.one("aws:iam/rolePolicy:RolePolicy", "platform-bucket")
    assert policy.inputs["role"] == f"{default.one('aws:iam/role:Role', 'platform-irsa').name}-id"
    arn = f"arn:aws:s3:::{default.outputs['bucket_name']}"
    resources: set[str] = set()
    for statement in json.loads(policy.inputs["policy"])["Statement"]:
        assert statement["Effect"] == "Allow"
        assert all(a.startswith("s3:") and "*" not in a for a in statement["Action"])
        resources |= {statement["Resource"]} if isinstance(statement["Resource"], str) else set(statement["Resource"])
    assert resources == {arn, f"{arn}/*"}
    assert default.outputs["irsa_role_arn"] == "arn:aws:mock:::platform-irsa"


def test_every_taggable_resource_carries_project_and_stack(default):
    taggable = [r for r in default.resources if r.typ in TAGGABLE]
    assert {r.typ for r in taggable} == TAGGABLE
    for r in taggable:
        tags = r.inputs.get("tags") or {}
        assert tags.get("project") == PROJECT and tags.get("stack") == STACK, (r.typ, r.name, tags)


def test_ecr_repositories_scan_on_push_and_immutable(default):
    repos = default.of("aws:ecr/repository:Repository")
    assert sorted(r.inputs["name"] for r in repos) == [f"{PROJECT}/mlops-{c}" for c in ("drift", "gateway", "mlflow", "predictor")]
    for repo in repos:
        assert repo.inputs["imageTagMutability"] == "IMMUTABLE"
        assert repo.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
    assert set(default.outputs["ecr_urls"]) == {"gateway", "predictor", "drift", "mlflow"}


def test_every_image_we_build_has_its_ecr_repository(default):
    # `mlops images build --push` pushes each of these to `[images] registry`, which on EKS is the stack's
    # `images_registry`; a push to ECR needs the repository to exist first (ECR user guide, "Pushing a Docker
    # image", docs.aws.amazon.com/AmazonECR/latest/userguide/docker-push-ecr-image.html).
    from charts.image_refs import COMPONENTS

    names = {r.inputs["name"] for r in default.of("aws:ecr/repository:Repository")}
    registry = default.outputs["images_registry"]
    assert {f"{registry}/mlops-{c}" for c in COMPONENTS} == {f"{registry.split('/')[0]}/{n}" for n in names}


def test_ecr_off_declares_no_repositories():
    d = declare(ecr_enabled=False)
    assert d.of("aws:ecr/repository:Repository") == []
    assert d.outputs["ecr_urls"] == {}


def test_stack_outputs_and_kubeconfig_is_secret(default):
    from stacks.program import OUTPUTS

    assert set(default.outputs) == set(OUTPUTS)
    assert default.outputs["cluster_name"] == "mlops"
    assert default.outputs["region"] == "us-east-1"
    assert default.outputs["vpc_id"] == "network-vpc-id"
    kubeconfig = json.loads(default.outputs["kubeconfig"])
    assert kubeconfig["clusters"][0]["cluster"]["server"].endswith(".eks.amazonaws.com")
    [user] = kubeconfig["users"]
    assert user["user"]["exec"]["args"] == ["eks-token", "--cluster", "mlops", "--region", "us-east-1"]
    assert default.secret_outputs == {"kubeconfig"}

"""The Pulumi program in stacks/, run under pulumi's mocks: what it declares and with which properties."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

pulumi = pytest.importorskip("pulumi")

from tests.pulumi_mocks import ISSUER, NAMESPACE, PROJECT, STACK, Declared, declare, irsa_trust  # noqa: E402

TAGGABLE = {
    "aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/internetGateway:InternetGateway", "aws:ec2/routeTable:RouteTable",
    "aws:ec2/eip:Eip", "aws:ec2/natGateway:NatGateway", "aws:iam/role:Role",
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider", "aws:s3/bucket:Bucket", "aws:ecr/repository:Repository",
    "aws:eks/cluster:Cluster", "aws:eks/nodeGroup:NodeGroup", "aws:ec2/launchTemplate:LaunchTemplate",
    "aws:cloudwatch/logGroup:LogGroup", "aws:eks/addon:Addon",
}


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
    d = declare(version="1.34", public_access_cidrs=["203.0.113.0/24"])
    cluster = d.one("aws:eks/cluster:Cluster")
    assert cluster.inputs["version"] == "1.34"
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
    d = declare(gpu=True, gpu_instance_types=["g5.2xlarge"], gpu_min_size=0, gpu_desired_size=1, gpu_max_size=3)
    groups = {r.name: r.inputs for r in d.of("aws:eks/nodeGroup:NodeGroup")}
    assert set(groups) == {"cluster-general", "cluster-gpu"}
    gpu = groups["cluster-gpu"]
    assert gpu["instanceTypes"] == ["g5.2xlarge"]
    assert gpu["amiType"] == "AL2023_x86_64_NVIDIA"
    assert gpu["scalingConfig"] == {"minSize": 0, "desiredSize": 1, "maxSize": 3}
    assert gpu["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    assert set(gpu["subnetIds"]) <= _ids(_subnets(d, "private"))
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

"""What AWS refuses: each aws:* resource of the stack as the API call its provider makes, checked against
the service models of the pinned botocore (botocore/data/<service>/<date>/service-2.json).

`calls(typ, inputs)` turns the engine inputs Pulumi hands the provider (camelCase) into the request the
AWS provider sends (pulumi-aws 7 bridges terraform-provider-aws: an eks.NodeGroup is CreateNodegroup, an
ec2.LaunchTemplate CreateLaunchTemplate, ...). `problems(call)` lists what AWS would answer with a
validation error: a required member missing, a value outside its enum, a string off its pattern or length,
a number outside min/max, a member the operation does not have. A type this module does not know is a
failure of its own: every aws:* resource the program declares must be checked.

Beyond the models, three facts the service checks at run time:
- EKS CreateCluster takes only versions EKS offers on the day (eks_versions.VERSIONS, dated, sourced);
- CreateNodegroup's launch template version must be a version the template has (a LaunchTemplate starts
  at version 1, terraform-provider-aws's latest_version; "None" is not a version);
- policy documents and add-on configuration values are JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from tests.aws_shapes import problems


@dataclass
class Call:
    service: str
    operation: str
    params: dict[str, Any]


class Refused(Exception):
    """What AWS would answer the call with (a ValidationException / InvalidParameterException)."""


def _tag_list(tags: dict[str, str] | None) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in (tags or {}).items()]


def _spec(resource_type: str, tags: dict[str, str] | None) -> list[dict[str, Any]]:
    return [{"ResourceType": resource_type, "Tags": _tag_list(tags)}] if tags else []


def _bool(value: Any) -> Any:
    # The provider parses string booleans (launch template ebs.encrypted is a string in its schema).
    if isinstance(value, str) and value in ("true", "false"):
        return value == "true"
    return value


def _normalized(value: Any) -> Any:
    """Unset members dropped, and whole floats as integers (the engine sends every number as a float)."""
    if isinstance(value, dict):
        return {k: _normalized(v) for k, v in value.items() if v is not None and v != [] and v != {}}
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _pascal(value: Any) -> Any:
    """camelCase engine keys as EC2/S3/IAM member names (PascalCase), recursively."""
    if isinstance(value, dict):
        return {k[:1].upper() + k[1:]: _pascal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_pascal(v) for v in value]
    return value


# ------------------------------------------------------------------------------- the provider's calls


def _ec2(i: dict[str, Any], typ: str) -> list[Call]:
    tags = i.get("tags")
    if typ == "aws:ec2/vpc:Vpc":
        return [Call("ec2", "CreateVpc", {"CidrBlock": i.get("cidrBlock"), "TagSpecifications": _spec("vpc", tags)})]
    if typ == "aws:ec2/subnet:Subnet":
        return [Call("ec2", "CreateSubnet", {"VpcId": i.get("vpcId"), "CidrBlock": i.get("cidrBlock"),
                                            "AvailabilityZone": i.get("availabilityZone"),
                                            "TagSpecifications": _spec("subnet", tags)})]
    if typ == "aws:ec2/internetGateway:InternetGateway":
        return [Call("ec2", "CreateInternetGateway", {"TagSpecifications": _spec("internet-gateway", tags)}),
                Call("ec2", "AttachInternetGateway", {"InternetGatewayId": "igw-0mock", "VpcId": i.get("vpcId")})]
    if typ == "aws:ec2/routeTable:RouteTable":
        out = [Call("ec2", "CreateRouteTable", {"VpcId": i.get("vpcId"), "TagSpecifications": _spec("route-table", tags)})]
        for route in i.get("routes") or []:
            params = {"RouteTableId": "rtb-0mock", "DestinationCidrBlock": route.get("cidrBlock"),
                      **{k[:1].upper() + k[1:]: v for k, v in route.items() if k != "cidrBlock"}}
            out.append(Call("ec2", "CreateRoute", params))
        return out
    if typ == "aws:ec2/routeTableAssociation:RouteTableAssociation":
        return [Call("ec2", "AssociateRouteTable", {"SubnetId": i.get("subnetId"), "RouteTableId": i.get("routeTableId")})]
    if typ == "aws:ec2/eip:Eip":
        return [Call("ec2", "AllocateAddress", {"Domain": i.get("domain"), "TagSpecifications": _spec("elastic-ip", tags)})]
    if typ == "aws:ec2/natGateway:NatGateway":
        return [Call("ec2", "CreateNatGateway", {"SubnetId": i.get("subnetId"), "AllocationId": i.get("allocationId"),
                                                "ConnectivityType": i.get("connectivityType"),
                                                "TagSpecifications": _spec("natgateway", tags)})]
    if typ == "aws:ec2/vpcEndpoint:VpcEndpoint":
        return [Call("ec2", "CreateVpcEndpoint", {"VpcId": i.get("vpcId"), "ServiceName": i.get("serviceName"),
                                                 "VpcEndpointType": i.get("vpcEndpointType"),
                                                 "RouteTableIds": i.get("routeTableIds"),
                                                 "TagSpecifications": _spec("vpc-endpoint", tags)})]
    if typ == "aws:ec2/launchTemplate:LaunchTemplate":
        data = {
            "BlockDeviceMappings": [{**_pascal({k: v for k, v in m.items() if k != "ebs"}),
                                     "Ebs": {k: _bool(v) for k, v in _pascal(m.get("ebs") or {}).items()}}
                                    for m in i.get("blockDeviceMappings") or []],
            "MetadataOptions": _pascal(i.get("metadataOptions")),
            "TagSpecifications": [{"ResourceType": s.get("resourceType"), "Tags": _tag_list(s.get("tags"))}
                                  for s in i.get("tagSpecifications") or []],
        }
        return [Call("ec2", "CreateLaunchTemplate", {"LaunchTemplateName": i.get("name"), "LaunchTemplateData": data,
                                                    "TagSpecifications": _spec("launch-template", tags)})]
    return []


def _eks(i: dict[str, Any], typ: str) -> list[Call]:
    tags = i.get("tags")
    if typ == "aws:eks/cluster:Cluster":
        vpc = i.get("vpcConfig") or {}
        return [Call("eks", "CreateCluster", {
            "name": i.get("name"), "version": i.get("version"), "roleArn": i.get("roleArn"),
            "resourcesVpcConfig": vpc, "accessConfig": i.get("accessConfig"), "upgradePolicy": i.get("upgradePolicy"),
            "logging": {"clusterLogging": [{"types": i["enabledClusterLogTypes"], "enabled": True}]}
            if i.get("enabledClusterLogTypes") else None,
            "tags": tags})]
    if typ == "aws:eks/nodeGroup:NodeGroup":
        return [Call("eks", "CreateNodegroup", {
            "clusterName": i.get("clusterName"), "nodegroupName": i.get("nodeGroupName"),
            "scalingConfig": i.get("scalingConfig"), "diskSize": i.get("diskSize"), "subnets": i.get("subnetIds"),
            "instanceTypes": i.get("instanceTypes"), "amiType": i.get("amiType"), "remoteAccess": i.get("remoteAccess"),
            "nodeRole": i.get("nodeRoleArn"), "labels": i.get("labels"), "taints": i.get("taints"), "tags": tags,
            "launchTemplate": i.get("launchTemplate"), "updateConfig": i.get("updateConfig"),
            "capacityType": i.get("capacityType"), "releaseVersion": i.get("releaseVersion"),
            "version": i.get("version")})]
    if typ == "aws:eks/addon:Addon":
        return [Call("eks", "CreateAddon", {
            "clusterName": i.get("clusterName"), "addonName": i.get("addonName"), "addonVersion": i.get("addonVersion"),
            "serviceAccountRoleArn": i.get("serviceAccountRoleArn"), "resolveConflicts": i.get("resolveConflictsOnCreate"),
            "configurationValues": i.get("configurationValues"), "tags": tags})]
    if typ == "aws:eks/accessEntry:AccessEntry":
        return [Call("eks", "CreateAccessEntry", {
            "clusterName": i.get("clusterName"), "principalArn": i.get("principalArn"), "type": i.get("type"),
            "kubernetesGroups": i.get("kubernetesGroups"), "username": i.get("userName"), "tags": tags})]
    if typ == "aws:eks/accessPolicyAssociation:AccessPolicyAssociation":
        return [Call("eks", "AssociateAccessPolicy", {
            "clusterName": i.get("clusterName"), "principalArn": i.get("principalArn"),
            "policyArn": i.get("policyArn"), "accessScope": i.get("accessScope")})]
    return []


def _iam(i: dict[str, Any], typ: str) -> list[Call]:
    if typ == "aws:iam/role:Role":
        return [Call("iam", "CreateRole", {"RoleName": i.get("name"), "AssumeRolePolicyDocument": i.get("assumeRolePolicy"),
                                          "Tags": _tag_list(i.get("tags"))})]
    if typ == "aws:iam/rolePolicy:RolePolicy":
        return [Call("iam", "PutRolePolicy", {"RoleName": i.get("role"), "PolicyName": i.get("name"),
                                             "PolicyDocument": i.get("policy")})]
    if typ == "aws:iam/rolePolicyAttachment:RolePolicyAttachment":
        return [Call("iam", "AttachRolePolicy", {"RoleName": i.get("role"), "PolicyArn": i.get("policyArn")})]
    if typ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
        return [Call("iam", "CreateOpenIDConnectProvider", {"Url": i.get("url"), "ClientIDList": i.get("clientIdLists"),
                                                           "ThumbprintList": i.get("thumbprintLists"),
                                                           "Tags": _tag_list(i.get("tags"))})]
    return []


def _s3(i: dict[str, Any], typ: str) -> list[Call]:
    bucket = i.get("bucket")
    if typ == "aws:s3/bucket:Bucket":
        return [Call("s3", "CreateBucket", {"Bucket": bucket})]
    if typ == "aws:s3/bucketOwnershipControls:BucketOwnershipControls":
        return [Call("s3", "PutBucketOwnershipControls",
                     {"Bucket": bucket, "OwnershipControls": {"Rules": [_pascal(i.get("rule"))]}})]
    if typ == "aws:s3/bucketVersioning:BucketVersioning":
        return [Call("s3", "PutBucketVersioning",
                     {"Bucket": bucket, "VersioningConfiguration": _pascal(i.get("versioningConfiguration"))})]
    if typ == "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration":
        rules = [{"ApplyServerSideEncryptionByDefault": {
            ("SSEAlgorithm" if k == "sseAlgorithm" else "KMSMasterKeyID" if k == "kmsMasterKeyId" else k): v
            for k, v in (r.get("applyServerSideEncryptionByDefault") or {}).items()},
            "BucketKeyEnabled": r.get("bucketKeyEnabled")} for r in i.get("rules") or []]
        return [Call("s3", "PutBucketEncryption", {"Bucket": bucket, "ServerSideEncryptionConfiguration": {"Rules": rules}})]
    if typ == "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock":
        flags = {k: i.get(k) for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")}
        flags = {k[:1].upper() + k[1:]: v for k, v in flags.items()}
        return [Call("s3", "PutPublicAccessBlock", {"Bucket": bucket, "PublicAccessBlockConfiguration": flags})]
    if typ == "aws:s3/bucketPolicy:BucketPolicy":
        return [Call("s3", "PutBucketPolicy", {"Bucket": bucket, "Policy": i.get("policy")})]
    if typ == "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration":
        rules = [{("ID" if k == "Id" else k): v for k, v in _pascal(r).items()} for r in i.get("rules") or []]
        return [Call("s3", "PutBucketLifecycleConfiguration", {"Bucket": bucket, "LifecycleConfiguration": {"Rules": rules}})]
    return []


def _other(i: dict[str, Any], typ: str) -> list[Call]:
    if typ == "aws:ecr/repository:Repository":
        return [Call("ecr", "CreateRepository", {
            "repositoryName": i.get("name"), "imageTagMutability": i.get("imageTagMutability"),
            "imageScanningConfiguration": i.get("imageScanningConfiguration"),
            "encryptionConfigurations": None, "tags": _tag_list(i.get("tags"))})]
    if typ == "aws:cloudwatch/logGroup:LogGroup":
        out = [Call("logs", "CreateLogGroup", {"logGroupName": i.get("name"), "tags": i.get("tags")})]
        if i.get("retentionInDays"):
            out.append(Call("logs", "PutRetentionPolicy", {"logGroupName": i.get("name"),
                                                          "retentionInDays": i["retentionInDays"]}))
        return out
    return []


# Provider inputs that are not part of the AWS request (the provider's own settings, or attributes it sets
# with a second call this module does not model): listed, so that anything else unmapped is noticed.
PROVIDER_ONLY = {
    "aws:ec2/vpc:Vpc": {"enableDnsHostnames", "enableDnsSupport"},
    "aws:ec2/subnet:Subnet": {"mapPublicIpOnLaunch"},
    "aws:ecr/repository:Repository": {"forceDelete"},
    "aws:eks/addon:Addon": {"resolveConflictsOnUpdate"},
    "aws:eks/nodeGroup:NodeGroup": {"nodeGroupNamePrefix"},
    "aws:s3/bucket:Bucket": {"forceDestroy", "bucketPrefix", "tags"},
    "aws:ec2/launchTemplate:LaunchTemplate": {"namePrefix"},
}


class _Seen(dict):
    """The engine inputs, remembering which keys a builder read (the rest must be PROVIDER_ONLY)."""

    def __init__(self, inputs: dict[str, Any]) -> None:
        super().__init__(inputs)
        self.read: set[str] = set()

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)


def calls(typ: str, inputs: dict[str, Any]) -> list[Call]:
    """The requests the AWS provider makes to create a resource of this type with these inputs."""
    seen = _Seen(inputs)
    service = typ.split(":")[1].split("/")[0]
    builder = {"ec2": _ec2, "eks": _eks, "iam": _iam, "s3": _s3}.get(service, _other)
    out = builder(seen, typ)
    if not out:
        raise Refused(f"{typ}: this mock does not know which AWS call the resource makes (add it to tests/aws_api.py)")
    unmapped = set(inputs) - seen.read - PROVIDER_ONLY.get(typ, set())
    if unmapped:
        raise Refused(f"{typ}: inputs {sorted(unmapped)} reach no member of {', '.join(c.operation for c in out)}")
    for call in out:
        call.params = _normalized(call.params)
    return out


# ------------------------------------------------------------------------- what the services check too


# What the create of a name that exists answers (ECR CreateRepository, CloudWatch Logs CreateLogGroup API references).
ALREADY_EXISTS = {"CreateRepository": "RepositoryAlreadyExistsException",
                  "CreateLogGroup": "ResourceAlreadyExistsException"}


@dataclass
class Account:
    """One AWS account as the mocks see it: the launch templates it holds, and the day it is."""

    today: date
    templates: dict[str, int] = field(default_factory=dict)   # launch template id -> latest version
    existing: dict[str, set[str]] = field(default_factory=dict)   # resource type -> names made outside the stack

    def refusals(self, call: Call, typ: str = "") -> list[str]:
        out = problems(call)
        p = call.params
        name = p.get("repositoryName") or p.get("logGroupName") if call.operation in ALREADY_EXISTS else None
        if name and name in self.existing.get(typ, set()):
            out.append(f"{call.service} {call.operation}: {ALREADY_EXISTS[call.operation]}: {name} exists already")
        if call.operation == "CreateCluster":
            out += self._version(p.get("version"))
        if call.operation == "CreateNodegroup" and p.get("launchTemplate"):
            out += self._template(p["launchTemplate"])
        for key in ("AssumeRolePolicyDocument", "PolicyDocument", "Policy", "configurationValues"):
            if isinstance(p.get(key), str) and not _is_json(p[key]):
                out.append(f"{call.service} {call.operation}: {key} is not a JSON document: {p[key][:60]!r}")
        return out

    def _version(self, version: str | None) -> list[str]:
        from mlops_cli.cloud.eks_versions import Support, status

        if version is None:
            return []
        st = status(version, self.today)
        if st.support in (Support.STANDARD, Support.EXTENDED):
            return []
        return [f"eks CreateCluster: unsupported Kubernetes version {version} on {self.today} ({st.describe()})"]

    def _template(self, spec: dict[str, Any]) -> list[str]:
        latest = self.templates.get(spec.get("id") or "")
        if latest is None:
            return [f"eks CreateNodegroup: launch template {spec.get('id')!r} does not exist"]
        version = spec.get("version")
        if version is not None and not (str(version).isdigit() and 1 <= int(version) <= latest):
            return [f"eks CreateNodegroup: launch template {spec['id']} has no version {version!r} (versions 1..{latest})"]
        return []


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _reference_date() -> date:
    from mlops_cli.cloud.eks_versions import CHECKED

    return CHECKED


# The day the mocked account lives on: the day the EKS calendar was last checked, not the test run's day,
# so that a test does not turn red on a calendar date (eks_versions.CHECKED).
REFERENCE_DATE = _reference_date()

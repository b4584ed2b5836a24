"""IRSA: the cluster's OIDC provider and IAM roles that each exactly one service account may assume.

A role's trust is pinned to `system:serviceaccount:<namespace>:<name>` with the STS audience
(`irsa_role`); the platform's only permission is object access to one bucket, the predictor's only
reading it: a pod that is not one of those service accounts gets nothing, and they get nothing beyond
the bucket.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

STS_AUDIENCE = "sts.amazonaws.com"


@dataclass(frozen=True)
class IdentityArgs:
    oidc_provider_url: pulumi.Input[str]   # https://oidc.eks.<region>.amazonaws.com/id/<id>
    oidc_issuer: pulumi.Input[str]         # the same without https://, as IAM condition keys spell it
    namespace: str
    service_account: str
    bucket_arn: pulumi.Input[str]
    tags: dict[str, str] = field(default_factory=dict)
    predictor_service_account: str = ""   # read-only role for the predictor's storage initializer


def trust_policy(provider_arn: str, issuer: str, namespace: str, service_account: str) -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                f"{issuer}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                f"{issuer}:aud": STS_AUDIENCE,
            }},
        }],
    })


def irsa_role(resource_name: str, provider_arn: pulumi.Input[str], issuer: pulumi.Input[str], namespace: str,
              service_account: str, tags: dict[str, str], opts: pulumi.ResourceOptions) -> aws.iam.Role:
    """An IAM role that only the service account `namespace/service_account` may assume (trust_policy)."""
    return aws.iam.Role(
        resource_name,
        assume_role_policy=pulumi.Output.all(provider_arn, issuer).apply(
            lambda v: trust_policy(v[0], v[1], namespace, service_account)),
        tags=tags,
        opts=opts,
    )


def read_only_bucket_policy(bucket_arn: str) -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ListTheBucket", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
             "Resource": bucket_arn},
            {"Sid": "ReadObjects", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": f"{bucket_arn}/*"},
        ],
    })


def bucket_policy(bucket_arn: str) -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ListTheBucket", "Effect": "Allow",
             "Action": ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
             "Resource": bucket_arn},
            {"Sid": "ReadWriteObjects", "Effect": "Allow",
             "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                        "s3:ListMultipartUploadParts"],
             "Resource": f"{bucket_arn}/*"},
        ],
    })


class PlatformIdentity(pulumi.ComponentResource):
    role_arn: pulumi.Output[str]
    oidc_provider_arn: pulumi.Output[str]

    def __init__(self, name: str, args: IdentityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:identity:PlatformIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        provider = aws.iam.OpenIdConnectProvider(
            f"{name}-oidc", url=args.oidc_provider_url, client_id_lists=[STS_AUDIENCE], tags=args.tags, opts=child)

        def bucket_role(prefix: str, service_account: str, policy: Callable[[str], str]) -> aws.iam.Role:
            """`<name>-<prefix>irsa` for one service account, allowed `policy(bucket_arn)` and nothing else."""
            role = irsa_role(f"{name}-{prefix}irsa", provider.arn, args.oidc_issuer, args.namespace, service_account,
                             args.tags, child)
            aws.iam.RolePolicy(f"{name}-{prefix}bucket", role=role.id,
                               policy=pulumi.Output.from_input(args.bucket_arn).apply(policy), opts=child)
            return role

        self.role_arn = bucket_role("", args.service_account, bucket_policy).arn
        self.oidc_provider_arn = provider.arn
        self.predictor_role_arn: pulumi.Output[str] = pulumi.Output.from_input("")
        if args.predictor_service_account:
            self.predictor_role_arn = bucket_role("predictor-", args.predictor_service_account,
                                                  read_only_bucket_policy).arn
        self.register_outputs({"role_arn": self.role_arn, "oidc_provider_arn": self.oidc_provider_arn,
                               "predictor_role_arn": self.predictor_role_arn})

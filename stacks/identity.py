"""IRSA: the cluster's OIDC provider and one IAM role that exactly one service account may assume.

The role's trust is pinned to `system:serviceaccount:<namespace>:<name>` with the STS audience, and its
only permission is object access to one bucket: a pod that is not the platform's service account gets
nothing, and the platform's gets nothing beyond its bucket.
"""

from __future__ import annotations

import json
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
        role = aws.iam.Role(
            f"{name}-irsa",
            assume_role_policy=pulumi.Output.all(provider.arn, args.oidc_issuer).apply(
                lambda v: trust_policy(v[0], v[1], args.namespace, args.service_account)),
            tags=args.tags,
            opts=child,
        )
        aws.iam.RolePolicy(f"{name}-bucket", role=role.id,
                           policy=pulumi.Output.from_input(args.bucket_arn).apply(bucket_policy), opts=child)

        self.role_arn = role.arn
        self.oidc_provider_arn = provider.arn
        self.predictor_role_arn: pulumi.Output[str] = pulumi.Output.from_input("")
        if args.predictor_service_account:
            reader = aws.iam.Role(
                f"{name}-predictor-irsa",
                assume_role_policy=pulumi.Output.all(provider.arn, args.oidc_issuer).apply(
                    lambda v: trust_policy(v[0], v[1], args.namespace, args.predictor_service_account)),
                tags=args.tags,
                opts=child,
            )
            aws.iam.RolePolicy(f"{name}-predictor-bucket", role=reader.id,
                               policy=pulumi.Output.from_input(args.bucket_arn).apply(read_only_bucket_policy), opts=child)
            self.predictor_role_arn = reader.arn
        self.register_outputs({"role_arn": self.role_arn, "oidc_provider_arn": self.oidc_provider_arn,
                               "predictor_role_arn": self.predictor_role_arn})

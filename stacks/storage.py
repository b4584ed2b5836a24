"""The S3 bucket for MLflow artifacts and the DVC remote.

Versioned (an overwrite or delete is recoverable for `noncurrent_days`), encrypted at rest, closed to
the public, reachable over TLS only. The bucket itself never auto-empties: `mlops down` keeps one that
holds data unless asked to delete it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class BucketArgs:
    bucket_name: str          # exact name, or "" for <prefix> + a random suffix (names are global)
    name_prefix: str
    noncurrent_days: int
    tags: dict[str, str] = field(default_factory=dict)
    adopt: str = ""           # a bucket a previous `down` kept: taken back into the stack by import


def bucket_prefix(*parts: str) -> str:
    """A valid S3 name prefix (lowercase, digits, dashes; ≤ 37 chars so the random suffix fits)."""
    raw = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")
    return raw[:36].rstrip("-") + "-"


def tls_only_policy(bucket_arn: str) -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn, f"{bucket_arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }],
    })


class ArtifactBucket(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]

    def __init__(self, name: str, args: BucketArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:storage:ArtifactBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        exact = args.adopt or args.bucket_name
        naming = {"bucket": exact} if exact else {"bucket_prefix": args.name_prefix}
        bucket = aws.s3.Bucket(name, force_destroy=False, tags=args.tags, **naming,
                               opts=pulumi.ResourceOptions(parent=self, import_=args.adopt or None))
        after_bucket = pulumi.ResourceOptions(parent=self, depends_on=[bucket])

        aws.s3.BucketOwnershipControls(f"{name}-ownership", bucket=bucket.id,
                                       rule={"object_ownership": "BucketOwnerEnforced"}, opts=child)
        aws.s3.BucketVersioning(f"{name}-versioning", bucket=bucket.id,
                                versioning_configuration={"status": "Enabled"}, opts=child)
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-sse", bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}, "bucket_key_enabled": True}],
            opts=child)
        block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access", bucket=bucket.id, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, opts=child)
        # After the block: S3 rejects a bucket policy while a public-access change is still settling.
        aws.s3.BucketPolicy(f"{name}-tls-only", bucket=bucket.id, policy=bucket.arn.apply(tls_only_policy),
                            opts=pulumi.ResourceOptions(parent=self, depends_on=[block]))
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle", bucket=bucket.id,
            rules=[{
                "id": "expire-noncurrent-versions",
                "status": "Enabled",
                "filter": {"prefix": ""},
                "noncurrent_version_expiration": {"noncurrent_days": args.noncurrent_days},
                "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
            }],
            opts=after_bucket)

        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.register_outputs({"bucket_name": self.bucket_name, "bucket_arn": self.bucket_arn})

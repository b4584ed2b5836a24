"""The AWS account the stack's AWS provider acts in, and the data left in the stack's bucket.

Pulumi's AWS provider reads the same credential chain as botocore (env vars, AWS_PROFILE, SSO,
instance roles), so resolving it here tells the user, before anything is created, which account and
region `up` would touch. botocore is imported inside functions (it is slow to import).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..common.errors import MlopsError, PreflightError

CREDENTIALS_HINT = "set AWS_PROFILE (after `aws configure` or `aws sso login`) or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"


@dataclass(frozen=True)
class AwsIdentity:
    account: str
    arn: str
    region: str
    source: str  # where the credentials came from: env, shared-credentials-file, sso, ...


def _client(service: str, region: str):
    import botocore.config
    import botocore.session

    session = botocore.session.get_session()
    # Fail fast: a preflight that hangs on an unreachable endpoint helps nobody.
    cfg = botocore.config.Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2})
    return session, session.create_client(service, region_name=region, config=cfg)


def caller_identity(region: str) -> AwsIdentity:
    """Resolve credentials and ask STS whose they are (read-only; needs no IAM permission)."""
    import botocore.exceptions

    try:
        session, sts = _client("sts", region)
        creds = session.get_credentials()
        if creds is None:
            raise PreflightError("no AWS credentials found (env, profile, SSO or instance role)", hint=CREDENTIALS_HINT)
        who = sts.get_caller_identity()
    except botocore.exceptions.ProfileNotFound as exc:
        raise PreflightError(f"AWS profile not found: {exc}", hint="fix AWS_PROFILE or ~/.aws/config") from None
    except botocore.exceptions.ClientError as exc:
        raise PreflightError(f"AWS rejected the credentials: {exc}", hint=CREDENTIALS_HINT) from None
    except botocore.exceptions.BotoCoreError as exc:
        raise PreflightError(f"could not verify AWS credentials: {exc}", hint=CREDENTIALS_HINT) from None
    return AwsIdentity(account=who["Account"], arn=who["Arn"], region=region, source=getattr(creds, "method", "") or "")


def bucket_has_data(bucket: str, region: str) -> bool:
    """True if the bucket holds any object version or delete marker (a versioned bucket is empty only then)."""
    import botocore.exceptions

    _, s3 = _client("s3", region)
    try:
        page = s3.list_object_versions(Bucket=bucket, MaxKeys=1)
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
            return False
        raise MlopsError(f"cannot list s3://{bucket}: {exc}") from None
    return bool(page.get("Versions") or page.get("DeleteMarkers"))


def empty_bucket(bucket: str, region: str) -> int:
    """Delete every object version and delete marker; returns how many were deleted."""
    _, s3 = _client("s3", region)
    deleted = 0
    # List from the start after each delete rather than paginate a listing that the deletes change.
    while True:
        page = s3.list_object_versions(Bucket=bucket, MaxKeys=1000)  # DeleteObjects takes at most 1000
        batch = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                 for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        if not batch:
            return deleted
        s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        deleted += len(batch)


CHECKIP_URL = "https://checkip.amazonaws.com"  # AWS's own "what is my IP" endpoint: one address, plain text


def egress_address(url: str = CHECKIP_URL) -> str:
    """The public IPv4 address this machine's traffic leaves from (what the EKS endpoint will see)."""
    import ipaddress

    import httpx

    try:
        text = httpx.get(url, timeout=5.0).raise_for_status().text.strip()
        return str(ipaddress.IPv4Address(text))
    except (httpx.HTTPError, ValueError) as exc:
        raise PreflightError(f"could not find your egress address from {url}: {exc}",
                             hint='set eks.public_access_cidrs = ["<your address>/32"] in mlops.toml') from None


def service_quota(service: str, code: str, region: str) -> float:
    """An applied Service Quotas value (falls back to the AWS default when the account has no override)."""
    import botocore.exceptions

    _, quotas = _client("service-quotas", region)
    try:
        try:
            return float(quotas.get_service_quota(ServiceCode=service, QuotaCode=code)["Quota"]["Value"])
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchResourceException":
                raise
            return float(quotas.get_aws_default_service_quota(ServiceCode=service, QuotaCode=code)["Quota"]["Value"])
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise MlopsError(f"Service Quotas {service}/{code}: {exc}") from None

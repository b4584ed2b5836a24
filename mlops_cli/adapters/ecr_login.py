"""Registry credentials for ECR, from the same AWS credential chain the EKS stack uses.

ECR's GetAuthorizationToken returns `authorizationData[0].authorizationToken`, base64 of
"AWS:<password>", valid for 12 hours, and the `proxyEndpoint` to log in to (AWS API reference,
ECR GetAuthorizationToken). The password goes to the engine on stdin only.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from ..common.errors import PreflightError
from .pulumi_aws_account import CREDENTIALS_HINT, _client

# <account>.dkr.ecr.<region>.amazonaws.com[.cn][/namespace]
ECR_HOST = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")


@dataclass(frozen=True)
class RegistryLogin:
    host: str
    username: str
    password: str

    def __repr__(self) -> str:  # never print the password
        return f"RegistryLogin(host={self.host!r}, username={self.username!r}, password='***')"


def ecr_region(registry: str) -> str | None:
    """The region of an ECR registry reference (host[/namespace]), None for any other registry."""
    match = ECR_HOST.match(registry.split("/", 1)[0])
    return match.group("region") if match else None


def ecr_login(registry: str) -> RegistryLogin:
    import botocore.exceptions

    host = registry.split("/", 1)[0]
    region = ecr_region(registry)
    if region is None:
        raise PreflightError(f"{registry} is not an ECR registry")
    account = ECR_HOST.match(host).group("account")
    try:
        _, ecr = _client("ecr", region)
        answer = ecr.get_authorization_token(registryIds=[account])
    except botocore.exceptions.NoCredentialsError:
        raise PreflightError("no AWS credentials found to log in to ECR", hint=CREDENTIALS_HINT) from None
    except botocore.exceptions.ClientError as exc:
        raise PreflightError(f"ECR refused the login to {host}: {exc}", hint=CREDENTIALS_HINT) from None
    except botocore.exceptions.BotoCoreError as exc:
        raise PreflightError(f"could not reach ECR in {region}: {exc}", hint=CREDENTIALS_HINT) from None
    data = answer["authorizationData"][0]
    username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    return RegistryLogin(host=host, username=username, password=password)

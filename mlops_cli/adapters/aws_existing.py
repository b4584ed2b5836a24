"""Resources of the stack that already exist in the account outside it: adopted, not collided with.

A returning user's account still holds the control-plane log group `/aws/eks/<cluster>/cluster` (EKS creates
it itself whenever logging is on and it is missing; EKS user guide, "Send control plane logs to CloudWatch
Logs"), and someone who pushed the images first created the ECR repositories by hand. Creating either again
fails (ResourceAlreadyExistsException, RepositoryAlreadyExistsException): the program imports them instead.
botocore is imported inside functions.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..common.errors import MlopsError
from .pulumi_aws_account import CREDENTIALS_HINT, _client


@dataclass(frozen=True)
class Existing:
    repositories: tuple[str, ...] = ()   # ECR repository names that exist
    log_group: str = ""                  # the log group name, when it exists


def find(region: str, repositories: list[str], log_group: str) -> Existing:
    import botocore.exceptions

    try:
        _, ecr = _client("ecr", region)
        found = []
        for name in repositories:   # one name per call: DescribeRepositories fails the whole call on a missing one
            try:
                ecr.describe_repositories(repositoryNames=[name])
                found.append(name)
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "RepositoryNotFoundException":
                    raise
        groups = []
        if log_group:
            _, logs = _client("logs", region)
            groups = logs.describe_log_groups(logGroupNamePrefix=log_group).get("logGroups", [])
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise MlopsError(f"could not check which of the stack's repositories and log group exist: {exc}",
                         hint=CREDENTIALS_HINT) from None
    exists = bool(log_group) and any(g.get("logGroupName") == log_group for g in groups)
    return Existing(tuple(found), log_group if exists else "")

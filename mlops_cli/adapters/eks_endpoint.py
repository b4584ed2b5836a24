"""The cluster's public API endpoint opened to this machine's address, before `down` talks to the cluster.

`up` limits public access to the egress address of the machine that ran it (`[eks].public_access_cidrs`
empty). From another network every Kubernetes call of `down` would time out, and `down` would fall back
to sweeping a cluster it could not empty. EKS UpdateClusterConfig with `resourcesVpcConfig.publicAccessCidrs`
changes the list in place (an asynchronous update: DescribeUpdate reports InProgress, then Successful, Failed
or Cancelled; EKS API reference, UpdateClusterConfig / DescribeUpdate). botocore is imported inside functions.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from typing import Any, Callable

from ..common.errors import MlopsError

UPDATE_DONE = ("Successful", "Failed", "Cancelled")


@dataclass(frozen=True)
class EndpointAccess:
    cidrs: tuple[str, ...]     # what the endpoint allows now
    opened: str = ""           # the CIDR added for this machine, "" when it was already allowed


def covers(cidrs: list[str], address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(c, strict=False) for c in cidrs)


def eks_client(region: str, endpoint_url: str | None = None) -> Any:
    import botocore.config
    import botocore.session

    cfg = botocore.config.Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3})
    return botocore.session.get_session().create_client("eks", region_name=region, endpoint_url=endpoint_url,
                                                        config=cfg)


def allow_address(eks: Any, cluster: str, address: str, *, timeout_s: float = 900.0, interval_s: float = 10.0,
                  clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] = time.sleep) -> EndpointAccess:
    """Make sure the endpoint accepts `address`: add `<address>/32` to its public CIDRs and wait for EKS."""
    import botocore.exceptions

    try:
        vpc = eks.describe_cluster(name=cluster)["cluster"]["resourcesVpcConfig"]
        cidrs = list(vpc.get("publicAccessCidrs") or [])
        if vpc.get("endpointPublicAccess") and covers(cidrs, address):
            return EndpointAccess(tuple(cidrs))
        wanted = [*cidrs, f"{address}/32"]
        update = eks.update_cluster_config(name=cluster, resourcesVpcConfig={
            "endpointPublicAccess": True, "publicAccessCidrs": wanted})["update"]
        deadline = clock() + timeout_s
        while (state := eks.describe_update(name=cluster, updateId=update["id"])["update"])["status"] not in UPDATE_DONE:
            if clock() >= deadline:
                raise MlopsError(f"EKS did not finish opening the endpoint of {cluster} to {address} in {timeout_s:g} s",
                                 hint="check the cluster's update in the EKS console, then re-run `mlops down --target eks`")
            sleep(interval_s)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise MlopsError(f"could not open the API endpoint of {cluster} to {address}: {exc}") from None
    if state["status"] != "Successful":
        why = "; ".join(e.get("errorMessage", "") for e in state.get("errors") or []) or state["status"]
        raise MlopsError(f"EKS refused to open the endpoint of {cluster} to {address}: {why}")
    return EndpointAccess(tuple(wanted), f"{address}/32")

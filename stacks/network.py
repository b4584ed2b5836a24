"""VPC across availability zones: a public and a private subnet in each, NAT for the private ones.

Nodes live only in private subnets; public subnets hold the NAT gateway(s) and internet-facing load
balancers. `single_nat` trades AZ-failure tolerance for one NAT gateway's cost instead of one per AZ.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

# The VPC is cut into 16 equal blocks: private subnets take blocks 0..5, public ones 8..13 (up to 6 AZs).
_SPLIT_BITS = 4
_PUBLIC_OFFSET = 8

# Zones where EKS refuses control-plane subnets (UnsupportedAvailabilityZoneException), by zone ID because
# zone names are shuffled per account. Source: Amazon EKS user guide, "VPC and subnet requirements"
# (https://docs.aws.amazon.com/eks/latest/userguide/network-reqs.html, subnet requirements).
EKS_UNSUPPORTED_ZONE_IDS = ("use1-az3", "usw1-az2", "cac1-az3")


class ZoneShortage(Exception):
    """Fewer usable zones than asked for: raised inside the program, shown by Pulumi at preview."""


def usable_zones(zone_names: list[str], zone_ids: list[str], offered: dict[str, set[str]],
                 instance_types: list[str], count: int) -> list[tuple[str, str]]:
    """The first `count` (name, id) zones that EKS accepts and that offer at least one node instance type.

    `offered` maps an instance type to the zone IDs that offer it (DescribeInstanceTypeOfferings with
    LocationType=availability-zone-id)."""
    usable = [(name, zid) for name, zid in zip(zone_names, zone_ids)
              if zid not in EKS_UNSUPPORTED_ZONE_IDS and any(zid in offered.get(t, set()) for t in instance_types)]
    if len(usable) < count:
        raise ZoneShortage(
            f"only {len(usable)} availability zone(s) ({', '.join(z for _, z in usable) or 'none'}) accept EKS and "
            f"offer {', '.join(instance_types)}; eks.availability_zones = {count}: lower it or pick other instance types")
    return usable[:count]


@dataclass(frozen=True)
class NetworkArgs:
    cidr: str
    region: str
    az_count: int
    single_nat: bool
    cluster_name: str
    tags: dict[str, str]
    instance_types: list[str]   # the general node group's: every chosen zone must offer one of them
    gpu_instance_types: list[str] = field(default_factory=list)   # the GPU group's: its subnets are the zones offering one


def gpu_subnets(zone_ids: list[str], offered: dict[str, set[str]], instance_types: list[str],
                subnet_ids: list[str]) -> list[str]:
    """The private subnets (one per chosen zone, in zone order) whose zone offers one of the GPU types: g5 is
    not offered in every zone that has m6i (DescribeInstanceTypeOfferings), and a node group with a subnet
    in such a zone fails its launches there."""
    usable = [sid for zid, sid in zip(zone_ids, subnet_ids) if any(zid in offered.get(t, set()) for t in instance_types)]
    if not usable:
        raise ZoneShortage(f"none of the chosen zones ({', '.join(zone_ids)}) offers {', '.join(instance_types)}: "
                           "pick another eks.gpu_instance_types, or eks.availability_zones / instance_types that "
                           "lead to zones offering it")
    return usable


def subnet_cidrs(cidr: str, az_count: int) -> tuple[list[str], list[str]]:
    """(private, public) CIDRs, one of each per AZ, non-overlapping inside `cidr`."""
    blocks = list(ipaddress.ip_network(cidr).subnets(prefixlen_diff=_SPLIT_BITS))
    private = [str(b) for b in blocks[:az_count]]
    public = [str(b) for b in blocks[_PUBLIC_OFFSET:_PUBLIC_OFFSET + az_count]]
    return private, public


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    zone_ids: pulumi.Output[list[str]]
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:network:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        def tagged(role: str, **extra: str) -> dict[str, str]:
            return {**args.tags, "Name": f"{name}-{role}", **extra}

        # The EKS subnet tags tell the AWS load balancer integrations where to place public/internal LBs.
        cluster_tag = {f"kubernetes.io/cluster/{args.cluster_name}": "shared"}
        invoke = pulumi.InvokeOutputOptions(parent=self)
        # Opt-in zones (Local/Wavelength) are not for EKS node groups; unsupported control-plane zones go by id.
        zones = aws.get_availability_zones_output(
            state="available", exclude_zone_ids=list(EKS_UNSUPPORTED_ZONE_IDS),
            filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}], opts=invoke)
        offerings = aws.ec2.get_instance_type_offerings_output(
            location_type="availability-zone-id",
            filters=[{"name": "instance-type", "values": [*args.instance_types, *args.gpu_instance_types]}], opts=invoke)

        def offered_by_type(result) -> dict[str, set[str]]:
            out: dict[str, set[str]] = {}
            for itype, zone_id in zip(result.instance_types, result.locations):
                out.setdefault(itype, set()).add(zone_id)
            return out

        chosen = pulumi.Output.all(zones.names, zones.zone_ids, offerings).apply(
            lambda v: usable_zones(v[0], v[1], offered_by_type(v[2]), list(args.instance_types), args.az_count))
        self.zone_ids = chosen.apply(lambda zs: [zid for _, zid in zs])
        private_cidrs, public_cidrs = subnet_cidrs(args.cidr, args.az_count)

        vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=args.cidr, enable_dns_hostnames=True, enable_dns_support=True,
                          tags=tagged("vpc"), opts=child)
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=tagged("igw"), opts=child)
        public_rt = aws.ec2.RouteTable(f"{name}-public", vpc_id=vpc.id,
                                       routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}],
                                       tags=tagged("public"), opts=child)

        public, private, nats, private_tables = [], [], [], []
        for i in range(args.az_count):
            az = chosen.apply(lambda zs, i=i: zs[i][0])
            pub = aws.ec2.Subnet(f"{name}-public-{i}", vpc_id=vpc.id, cidr_block=public_cidrs[i], availability_zone=az,
                                 map_public_ip_on_launch=True,
                                 tags=tagged(f"public-{i}", **cluster_tag, **{"kubernetes.io/role/elb": "1"}), opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-public-{i}", subnet_id=pub.id, route_table_id=public_rt.id, opts=child)
            public.append(pub)
            if i == 0 or not args.single_nat:
                eip = aws.ec2.Eip(f"{name}-nat-{i}", domain="vpc", tags=tagged(f"nat-{i}"), opts=child)
                nats.append(aws.ec2.NatGateway(f"{name}-nat-{i}", subnet_id=pub.id, allocation_id=eip.id,
                                               tags=tagged(f"nat-{i}"), opts=pulumi.ResourceOptions(parent=self, depends_on=[igw])))
            priv = aws.ec2.Subnet(f"{name}-private-{i}", vpc_id=vpc.id, cidr_block=private_cidrs[i], availability_zone=az,
                                  map_public_ip_on_launch=False,
                                  tags=tagged(f"private-{i}", **cluster_tag, **{"kubernetes.io/role/internal-elb": "1"}),
                                  opts=child)
            nat = nats[0] if args.single_nat else nats[i]
            rt = aws.ec2.RouteTable(f"{name}-private-{i}", vpc_id=vpc.id,
                                    routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id}],
                                    tags=tagged(f"private-{i}"), opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-private-{i}", subnet_id=priv.id, route_table_id=rt.id, opts=child)
            private_tables.append(rt)
            private.append(priv)

        # S3 through a gateway endpoint on the private route tables: image layers (ECR keeps them in S3) and
        # MLflow's artifacts stop passing the NAT gateway, which bills $0.045 per GB (VPC user guide,
        # "Gateway endpoints for Amazon S3"; gateway endpoints have no charge).
        aws.ec2.VpcEndpoint(f"{name}-s3", vpc_id=vpc.id, service_name=f"com.amazonaws.{args.region}.s3",
                            vpc_endpoint_type="Gateway", route_table_ids=[rt.id for rt in private_tables],
                            tags=tagged("s3"), opts=child)
        self.vpc_id = vpc.id
        self.public_subnet_ids = [s.id for s in public]
        self.private_subnet_ids = [s.id for s in private]
        self.gpu_subnet_ids: pulumi.Output[list[str]] | None = None
        if args.gpu_instance_types:
            self.gpu_subnet_ids = pulumi.Output.all(self.zone_ids, offerings, *self.private_subnet_ids).apply(
                lambda v: gpu_subnets(v[0], offered_by_type(v[1]), list(args.gpu_instance_types), list(v[2:])))
        self.register_outputs({"vpc_id": self.vpc_id, "public_subnet_ids": self.public_subnet_ids,
                               "private_subnet_ids": self.private_subnet_ids})

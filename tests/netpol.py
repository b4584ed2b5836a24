"""A NetworkPolicy evaluator for tests: what a conforming implementation decides for one connection.

Semantics from kubernetes.io/docs/concepts/services-networking/network-policies/:
- A pod is isolated for ingress (egress) when any policy in its namespace selects it and has
  "Ingress" ("Egress") in policyTypes; policyTypes defaults to ["Ingress"], plus "Egress" when the
  policy has an egress section. A non-isolated direction allows everything.
- Policies are additive: a connection is allowed when some rule of some selecting policy allows it;
  it must be allowed both by the source's egress and by the destination's ingress.
- A peer with podSelector only: pods in the policy's own namespace; namespaceSelector only: all pods
  in matching namespaces; both in one element: pods matching both (AND); ipBlock: addresses in cidr
  and not in except. A rule whose `to`/`from` is empty or missing matches every peer; one whose
  `ports` is empty or missing matches every port; `port` with `endPort` is a range; protocol
  defaults to TCP. A policy whose `ingress`/`egress` list is empty allows nothing in that direction.
- Namespaces carry the label kubernetes.io/metadata.name (set by the API server).
Named ports are refused here (our policies use numbers), rather than guessed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)
    ip: str | None = None   # only ipBlock peers look at it


@dataclass(frozen=True)
class External:
    ip: str


Endpoint = Pod | External


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A LabelSelector: matchLabels and matchExpressions ANDed; {} selects everything."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {"In": key in labels and labels[key] in values, "NotIn": key not in labels or labels[key] not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


def _policy_types(spec: dict[str, Any]) -> list[str]:
    if "policyTypes" in spec:
        return spec["policyTypes"]
    return ["Ingress", "Egress"] if "egress" in spec else ["Ingress"]


def _peer_matches(peer: dict[str, Any], policy_ns: str, other: Endpoint, namespace_labels: dict[str, dict[str, str]]) -> bool:
    if "ipBlock" in peer:
        ip = other.ip
        if ip is None:
            return False
        block = peer["ipBlock"]
        address = ipaddress.ip_address(ip)
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(e) for e in block.get("except") or [])
    if not isinstance(other, Pod):
        return False  # pod and namespace selectors select pods only
    if "namespaceSelector" in peer:
        ns_labels = {**namespace_labels.get(other.namespace, {}), "kubernetes.io/metadata.name": other.namespace}
        if not selects(peer["namespaceSelector"], ns_labels):
            return False
    elif other.namespace != policy_ns:
        return False
    return selects(peer.get("podSelector"), other.labels) if "podSelector" in peer else True


def _port_matches(rule_ports: list[dict[str, Any]] | None, port: int, protocol: str) -> bool:
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        if "port" not in p:
            return True
        if not isinstance(p["port"], int):
            raise NotImplementedError(f"named port {p['port']!r}: this evaluator only knows numbers")
        if p["port"] <= port <= p.get("endPort", p["port"]):
            return True
    return False


def _direction_allows(policies: list[dict[str, Any]], pod: Pod, other: Endpoint, port: int, protocol: str,
                      direction: str, namespace_labels: dict[str, dict[str, str]]) -> bool:
    selecting = [p for p in policies if p["metadata"].get("namespace") == pod.namespace
                 and selects(p["spec"].get("podSelector"), pod.labels) and direction in _policy_types(p["spec"])]
    if not selecting:
        return True  # not isolated in this direction
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for policy in selecting:
        for rule in policy["spec"].get(key) or []:
            if not _port_matches(rule.get("ports"), port, protocol):
                continue
            if not rule.get(peers_key) or any(_peer_matches(peer, pod.namespace, other, namespace_labels) for peer in rule[peers_key]):
                return True
    return False


def allowed(policies: list[dict[str, Any]], src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP",
            namespace_labels: dict[str, dict[str, str]] | None = None) -> bool:
    """Whether a connection from src to dst's pod port is allowed (after Service address translation)."""
    nsl = namespace_labels or {}
    policies = [p for p in policies if p.get("kind") == "NetworkPolicy"]
    if isinstance(src, Pod) and not _direction_allows(policies, src, dst, port, protocol, "Egress", nsl):
        return False
    if isinstance(dst, Pod) and not _direction_allows(policies, dst, src, port, protocol, "Ingress", nsl):
        return False
    return True

"""Firewall rules: what may reach a project network NIC from outside its network.

A NIC in a project network takes, from outside the network, only what a rule of its
network or of its VM lets in (its network's own members reach it freely; the agent
builds that). A rule names a protocol, for tcp and udp optionally a port range, and the
IPv6 network the traffic may come from. Changing one tells the hosts it concerns.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from nubis import revisions, vms
from nubis.errors import Conflict, InvalidInput, NotFound
from nubis.ids import Kind, looks_like_id, parse_id
from nubis.models import GONE, FirewallRule, Network, Vm

PROTOCOLS = ("tcp", "udp", "icmp", "any")
"""`icmp` is ICMPv6."""
EVERYWHERE = "::/0"


@dataclass(frozen=True)
class Rule:
    """A rule's checked fields."""

    protocol: str
    port_min: int | None
    port_max: int | None
    source: str


_PORTS = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?")


def _ports(text: str) -> tuple[int, int]:
    matched = _PORTS.fullmatch(text.strip())
    if matched is None:
        raise ValueError("give a port (22) or a range (8000-8100)")
    first = int(matched[1])
    last = int(matched[2]) if matched[2] else first
    if not (1 <= first <= 65535 and 1 <= last <= 65535):
        raise ValueError("ports are 1 to 65535")
    if first > last:
        raise ValueError(f"the range {first}-{last} ends before it starts")
    return first, last


def _source(text: str) -> str:
    text = text.strip()
    wrong = f"{text!r} is not an IPv6 network (e.g. 2001:db8::/32 or ::/0)"
    if "%" in text:  # a zone names one host's link, not a network
        raise ValueError(wrong)
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(wrong) from None
    if network.version != 6:
        raise ValueError(f"{text} is IPv4: firewall rules are IPv6 (::/0 is everyone)")
    if ipaddress.ip_address(text.partition("/")[0]) != network.network_address:
        raise ValueError(f"{text} has host bits set: the network is {network}")
    return str(network)


def check(protocol: str, ports: str | None, source: str | None) -> Rule:
    """The rule these fields make; InvalidInput naming every field that is wrong."""
    errors: dict[str, str] = {}
    if protocol not in PROTOCOLS:
        errors["protocol"] = f"one of {', '.join(PROTOCOLS)}"
    port_min = port_max = None
    if ports is not None:
        if protocol not in ("tcp", "udp"):
            errors["port"] = "only tcp and udp rules have ports"
        else:
            try:
                port_min, port_max = _ports(ports)
            except ValueError as error:
                errors["port"] = str(error)
    checked = EVERYWHERE
    try:
        checked = _source(source if source is not None else EVERYWHERE)
    except ValueError as error:
        errors["source"] = str(error)
    if errors:
        reasons = "; ".join(f"{name}: {why}" for name, why in errors.items())
        raise InvalidInput(f"the rule is not valid: {reasons}", errors=errors)
    return Rule(protocol, port_min, port_max, checked)


def add(
    session: Session, project_id: UUID, rule: Rule, *, vm: Vm | None, network: Network | None
) -> FirewallRule:
    """Add a rule to one VM (of the project) or one network (of the project)."""
    if (vm is None) == (network is None):
        raise InvalidInput("a rule is for a VM or for a network", errors={"vm": "or network"})
    if vm is not None and vm.label in GONE:
        raise Conflict(f"VM {vm.name} is being deleted")
    made = FirewallRule(
        project_id=project_id,
        vm_id=vm.id if vm else None,
        network_id=network.id if network else None,
        protocol=rule.protocol,
        port_min=rule.port_min,
        port_max=rule.port_max,
        source=rule.source,
    )
    session.add(made)
    session.flush()
    touch(session, made)
    return made


def find(session: Session, project_id: UUID, ref: str) -> FirewallRule:
    """The project's rule with the id `ref` (rules have no names)."""
    found = None
    if looks_like_id(Kind.FIREWALL_RULE, ref):
        try:
            key = parse_id(Kind.FIREWALL_RULE, ref)
        except InvalidInput:
            key = None
        if key is not None:
            found = session.scalars(
                select(FirewallRule).where(
                    FirewallRule.project_id == project_id, FirewallRule.id == key
                )
            ).one_or_none()
    if found is None:
        raise NotFound(f"no firewall rule {ref!r}")
    return found


def delete(session: Session, rule: FirewallRule) -> None:
    touch(session, rule)
    session.delete(rule)


def touch(session: Session, rule: FirewallRule) -> None:
    """Tell the hosts whose NICs `rule` covers."""
    if rule.network_id is not None:
        vms.touch_networks(session, [rule.network_id])
        return
    vm = session.get(Vm, rule.vm_id) if rule.vm_id else None
    if vm is not None and vm.host_id is not None and vm.label not in GONE:
        revisions.touch(session, vm.host_id)

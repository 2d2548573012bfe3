"""Bodies of the firewall rule routes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from nubis.api.schemas.common import Input
from nubis.ids import Kind, format_id
from nubis.models import FirewallRule


class RuleCreate(Input):
    vm: str | None = Field(default=None, min_length=1, max_length=64)
    """The VM (name or id) whose project network NICs it opens; or `network`."""
    network: str | None = Field(default=None, min_length=1, max_length=64)
    """The network (name or id) whose every NIC it opens; or `vm`."""
    protocol: Literal["tcp", "udp", "icmp", "any"]
    """`icmp` is ICMPv6."""
    port: str | None = Field(default=None, min_length=1, max_length=11, examples=["22"])
    """tcp and udp only: a port (`22`) or a range (`8000-8100`); none: every port."""
    source: str | None = Field(default=None, min_length=1, max_length=64, examples=["::/0"])
    """The IPv6 network the traffic may come from; default `::/0` (everyone)."""


class RuleOut(BaseModel):
    id: str
    vm: str | None
    network: str | None
    protocol: str
    port_min: int | None
    port_max: int | None
    source: str
    created_at: datetime

    @classmethod
    def of(cls, rule: FirewallRule) -> RuleOut:
        return cls(
            id=format_id(Kind.FIREWALL_RULE, rule.id),
            vm=format_id(Kind.VM, rule.vm_id) if rule.vm_id else None,
            network=format_id(Kind.NETWORK, rule.network_id) if rule.network_id else None,
            protocol=rule.protocol,
            port_min=rule.port_min,
            port_max=rule.port_max,
            source=rule.source,
            created_at=rule.created_at,
        )

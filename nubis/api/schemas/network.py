"""Bodies of the network routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from nubis.api.schemas.common import Input, Name
from nubis.ids import Kind, format_id
from nubis.models import Flooding, Location
from nubis.networks import Placed, public_id
from nubis.protocol import Ipam


class NetworkCreate(Input):
    name: Name
    ipam: Ipam = Field(default=Ipam.AUTO, strict=False)  # strict takes only Ipam objects
    """`none`: plain layer 2; `manual`: a /64, addresses told, not announced; `auto`:
    the /64 announced by router advertisements (SLAAC)."""
    location: str | None = Field(default=None, max_length=64)
    """Needed only where there is more than one location."""


class NetworkOut(BaseModel):
    id: str
    name: str
    ipam: Ipam
    vni: int
    prefix: str | None
    """The network's /64 (`manual` and `auto`)."""
    gateway: str | None
    """The hosts' address in the /64: the VMs' router (`auto`)."""
    location: str
    created_at: datetime

    @classmethod
    def of(cls, placed: Placed) -> NetworkOut:
        network = placed.network
        return cls(
            id=public_id(network.id),
            name=network.name,
            ipam=Ipam(network.ipam),
            vni=network.vni,
            prefix=placed.prefix,
            gateway=placed.gateway,
            location=placed.location.name,
            created_at=network.created_at,
        )


class NicAdd(Input):
    network: str = Field(min_length=1, max_length=64)
    """The project network's name or id."""


class LocationUpdate(Input):
    flooding: Flooding = Field(strict=False)  # strict takes only Flooding objects
    """How VXLAN reaches the hosts of the location's networks."""


class LocationCreate(Input):
    name: Name
    prefix: str = Field(min_length=1, max_length=64, examples=["2001:db8:1::/48"])
    """Its IPv6 prefix, a /56 or larger: the networks' /64s come from it."""
    display_name: str | None = Field(default=None, min_length=1, max_length=100)
    """A name for people (default: the name)."""
    flooding: Flooding = Field(default=Flooding.MULTICAST, strict=False)
    """How VXLAN reaches the hosts of the location's networks."""


class LocationOut(BaseModel):
    id: str
    name: str
    display_name: str
    prefix: str
    flooding: Flooding
    created_at: datetime

    @classmethod
    def of(cls, location: Location) -> LocationOut:
        return cls(
            id=format_id(Kind.LOCATION, location.id),
            name=location.name,
            display_name=location.display_name,
            prefix=location.prefix,
            flooding=Flooding(location.flooding),
            created_at=location.created_at,
        )

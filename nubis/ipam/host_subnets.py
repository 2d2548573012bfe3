"""Each host's own /64 of its location's prefix: the VM network it announces and routes."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from nubis.ipam import subnets
from nubis.models import Host, Location, Subnet


def assign(session: Session, host: Host) -> str:
    """Give a new host (flushed) the lowest free /64 of its location; the /64."""
    # Locked: a network made at the same time must not take the same /64.
    location = session.get_one(Location, host.location_id, with_for_update=True)
    taken = session.scalars(select(Subnet.number).where(Subnet.location_id == location.id))
    number = subnets.first_free(location.prefix, taken)
    session.add(Subnet(location_id=location.id, number=number, host_id=host.id))
    return subnets.subnet(location.prefix, number)


def of(session: Session, host: Host) -> str:
    """The /64 the host announces to its VMs."""
    row = session.execute(
        select(Location.prefix, Subnet.number)
        .join(Subnet, Subnet.location_id == Location.id)
        .where(Subnet.host_id == host.id)
    ).one()
    return subnets.subnet(row.prefix, row.number)

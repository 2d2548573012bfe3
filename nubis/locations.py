"""Locations: where hosts and networks live, each with the IPv6 prefix their /64s come
from and the way its networks flood."""

from __future__ import annotations

import ipaddress

from sqlalchemy import select
from sqlalchemy.orm import Session

from nubis import revisions
from nubis.db.refs import ref_clause
from nubis.errors import Conflict, InvalidInput, NotFound
from nubis.ids import Kind
from nubis.models import Flooding, Location
from nubis.names import check_name


def create(
    session: Session, name: str, prefix: str, *, display_name: str | None = None, flooding: str
) -> Location:
    check_name(name)
    try:
        network = ipaddress.IPv6Network(prefix)
    except ValueError as error:
        raise InvalidInput(f"{prefix!r} is not an IPv6 prefix: {error}") from None
    if network.prefixlen > 56:
        raise InvalidInput(f"{prefix} is too small: a location needs a /56 or larger")
    if session.scalar(select(Location.id).where(Location.name == name)) is not None:
        raise Conflict(f"a location named {name!r} exists already")
    location = Location(
        name=name, display_name=display_name or name, prefix=str(network), flooding=flooding
    )
    session.add(location)
    session.flush()
    return location


def find(session: Session, ref: str) -> Location:
    """The location `ref` names (a name or an id)."""
    found = session.scalars(
        select(Location).where(ref_clause(Kind.LOCATION, Location.id, Location.name, ref))
    ).one_or_none()
    if found is None:
        raise NotFound(f"no location {ref!r}")
    return found


def of_request(session: Session, ref: str | None) -> Location:
    """The location `ref` names; without one, the only location there is."""
    if ref is not None:
        return find(session, ref)
    found = session.scalars(select(Location).limit(2)).all()
    if len(found) != 1:
        raise InvalidInput(
            "say which location the VM goes to" if found else "there is no location yet",
            errors={"location": "required"},
        )
    return found[0]


def set_flooding(session: Session, location: Location, flooding: Flooding) -> bool:
    """Change how the location's networks flood; every host there is told. False if it
    floods that way already."""
    if location.flooding == flooding:
        return False
    location.flooding = flooding.value
    revisions.touch_location(session, location.id)
    return True

"""`/v1/admin/locations`: operators make locations, change how their networks flood,
and issue the join tokens hosts join them with.

Every change goes through `nubis/locations.py` or `nubis/hosts.py` and leaves an audit
event (`admin.location.create`, …; `nubis/api/operators.py`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, status
from sqlalchemy import select

from nubis import hosts, locations
from nubis.api.deps import DatabaseDep, PrincipalDep
from nubis.api.operators import Change, change
from nubis.api.pagination import Cursor, Limit, Page, fetch_page
from nubis.api.schemas.host import JoinTokenCreate, JoinTokenOut
from nubis.api.schemas.network import LocationCreate, LocationOut, LocationUpdate
from nubis.auth.authz import Action, authorize
from nubis.clock import now
from nubis.ids import Kind, format_id
from nubis.models import Location
from nubis.units import parse_duration

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.get("/locations")
def list_locations(
    db: DatabaseDep, principal: PrincipalDep, limit: Limit = 100, cursor: Cursor = None
) -> Page[LocationOut]:
    authorize(principal, Action.OPERATE)
    with db.reading() as session:
        rows, next_cursor = fetch_page(
            session, select(Location), Location.id, cursor, limit, key_of=lambda r: r[0].id
        )
        return Page(items=[LocationOut.of(loc) for (loc,) in rows], next_cursor=next_cursor)


@router.post("/locations", status_code=status.HTTP_201_CREATED)
def create_location(
    body: LocationCreate, act: Annotated[Change, change("admin.location.create")]
) -> LocationOut:
    """A new location; 422 unless its prefix is an IPv6 /56 or larger, 409 if the name is
    taken."""
    act.target = body.name
    with act.transaction() as session:
        made = locations.create(
            session,
            body.name,
            body.prefix,
            display_name=body.display_name,
            flooding=body.flooding,
        )
        act.target = format_id(Kind.LOCATION, made.id)
        act.detail = f"{made.name}: {made.prefix}, {made.flooding} flooding"
        return LocationOut.of(made)


@router.get("/locations/{location}")
def read_location(location: str, db: DatabaseDep, principal: PrincipalDep) -> LocationOut:
    authorize(principal, Action.OPERATE)
    with db.reading() as session:
        return LocationOut.of(locations.find(session, location))


@router.patch("/locations/{location}")
def update_location(
    location: str, body: LocationUpdate, act: Annotated[Change, change("admin.location.update")]
) -> LocationOut:
    """Change how the location's networks flood (multicast or unicast); its hosts are
    told at once."""
    with act.transaction() as session:
        found = locations.find(session, location)
        act.target = format_id(Kind.LOCATION, found.id)
        before = found.flooding
        changed = locations.set_flooding(session, found, body.flooding)
        act.detail = (
            f"{found.name}: flooding {before} -> {body.flooding}"
            if changed
            else f"{found.name}: floods by {body.flooding} already"
        )
        return LocationOut.of(found)


@router.post("/locations/{location}/join-tokens", status_code=status.HTTP_201_CREATED)
def create_join_token(
    location: str,
    body: JoinTokenCreate,
    act: Annotated[Change, change("admin.location.join_token")],
) -> JoinTokenOut:
    """A one-time token for `nubis agent --join-token`: one host joins the location with
    it, within its lifetime. It is kept only as a hash; the audit event holds no secret."""
    lifetime = parse_duration(body.expires_in)
    with act.transaction() as session:
        found = locations.find(session, location)
        act.target = format_id(Kind.LOCATION, found.id)
        # Taken before the token's own, so the time shown is never later than its end.
        expires_at = now() + lifetime
        secret = hosts.issue_join_token(session, found.id, lifetime)
        act.detail = f"a join token to {found.name}, good until {expires_at:%Y-%m-%dT%H:%M:%SZ}"
        return JoinTokenOut(location=found.name, secret=secret, expires_at=expires_at)

"""`/v1/admin`: operator routes for users, the audit log, locations and hosts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from nubis import evacuation, hosts, locations
from nubis.api.deps import DatabaseDep, PrincipalDep
from nubis.api.pagination import Cursor, Limit, Page, fetch_page
from nubis.api.schemas.account import AuditEventOut, UserCreate, UserOut, UserUpdate
from nubis.api.schemas.host import EvacuationOut
from nubis.api.schemas.network import LocationOut, LocationUpdate
from nubis.auth import accounts
from nubis.auth.authz import Action, authorize
from nubis.errors import Conflict, NotFound
from nubis.ids import Kind, format_id
from nubis.models import AuditEvent, Flooding, User
from nubis.names import ref_clause

router = APIRouter(prefix="/v1/admin", tags=["admin"])


def _user(session: Session, ref: str, *, lock: bool = False) -> User:
    query = select(User).where(ref_clause(Kind.USER, User.id, User.name, ref))
    user = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if user is None:
        raise NotFound(f"no user {ref!r}")
    return user


@router.get("/users")
def list_users(
    db: DatabaseDep, principal: PrincipalDep, limit: Limit = 100, cursor: Cursor = None
) -> Page[UserOut]:
    authorize(principal, Action.OPERATE)
    with db.reading() as session:
        rows, next_cursor = fetch_page(
            session, select(User), User.id, cursor, limit, key_of=lambda r: r[0].id
        )
        return Page(items=[UserOut.of(u) for (u,) in rows], next_cursor=next_cursor)


@router.post("/users", status_code=status.HTTP_201_CREATED)
def create_user(body: UserCreate, db: DatabaseDep, principal: PrincipalDep) -> UserOut:
    authorize(principal, Action.OPERATE)
    with db.transaction() as session:
        user = accounts.create_user(
            session, body.name, body.email, body.password, operator=body.operator
        )
        return UserOut.of(user)


@router.get("/users/{user}")
def read_user(user: str, db: DatabaseDep, principal: PrincipalDep) -> UserOut:
    authorize(principal, Action.OPERATE)
    with db.reading() as session:
        return UserOut.of(_user(session, user))


@router.patch("/users/{user}")
def update_user(user: str, body: UserUpdate, db: DatabaseDep, principal: PrincipalDep) -> UserOut:
    """Disable or enable a user (a disabled user's tokens stop working), or make or unmake
    an operator.
    """
    authorize(principal, Action.OPERATE)
    with db.transaction() as session:
        target = _user(session, user, lock=True)
        if target.id == principal.user_id and (body.disabled or body.operator is False):
            raise Conflict("an operator cannot disable themselves or drop their own operator role")
        if body.disabled is not None:
            target.disabled = body.disabled
        if body.operator is not None:
            target.is_operator = body.operator
        return UserOut.of(target)


@router.get("/audit")
def list_audit_events(
    db: DatabaseDep,
    principal: PrincipalDep,
    action: Annotated[str | None, Query(max_length=40)] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[AuditEventOut]:
    """The audit log, newest first."""
    authorize(principal, Action.OPERATE)
    query = select(AuditEvent)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    with db.reading() as session:
        rows, next_cursor = fetch_page(
            session,
            query,
            AuditEvent.id,
            cursor,
            limit,
            key_of=lambda r: r[0].id,
            newest_first=True,
        )
        return Page(items=[AuditEventOut.of(e) for (e,) in rows], next_cursor=next_cursor)


@router.patch("/locations/{location}")
def update_location(
    location: str, body: LocationUpdate, db: DatabaseDep, principal: PrincipalDep
) -> LocationOut:
    """Change how the location's networks flood (multicast or unicast); its hosts are
    told at once."""
    authorize(principal, Action.OPERATE)
    with db.transaction() as session:
        found = locations.find(session, location)
        locations.set_flooding(session, found, body.flooding)
        return LocationOut(
            id=format_id(Kind.LOCATION, found.id),
            name=found.name,
            display_name=found.display_name,
            prefix=found.prefix,
            flooding=Flooding(found.flooding),
        )


@router.post("/hosts/{host}/evacuate", status_code=status.HTTP_202_ACCEPTED)
def evacuate_host(host: str, db: DatabaseDep, principal: PrincipalDep) -> EvacuationOut:
    """Empty a host for maintenance: it takes no new VMs (`draining`), and each of its VMs
    is stopped there, then recreated on another host (never running on both). The VMs
    show `moving`; the host's and the VMs' event logs tell each step."""
    authorize(principal, Action.OPERATE)
    with db.transaction() as session:
        found = hosts.find(session, host, lock=True)
        moving = evacuation.evacuate(session, found)
        return EvacuationOut(
            host=format_id(Kind.HOST, found.id),
            name=found.name,
            allocation_state=found.allocation_state,
            moving=moving,
        )

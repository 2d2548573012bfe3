"""`/v1/admin/users` and `/v1/admin/audit`: operators manage accounts and read the audit log
(locations, hosts, images and strands have modules of their own)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from nubis.api.deps import DatabaseDep, PrincipalDep
from nubis.api.operators import Change, change
from nubis.api.pagination import Cursor, Limit, Page, fetch_page
from nubis.api.schemas.account import AuditEventOut, UserCreate, UserOut, UserUpdate
from nubis.auth import accounts
from nubis.auth.authz import Action, authorize
from nubis.db.refs import ref_clause
from nubis.errors import Conflict, NotFound
from nubis.ids import Kind, format_id
from nubis.models import AuditEvent, User

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
def create_user(body: UserCreate, act: Annotated[Change, change("admin.user.create")]) -> UserOut:
    act.target = body.name
    with act.transaction() as session:
        user = accounts.create_user(
            session, body.name, body.email, body.password, operator=body.operator
        )
        act.target = format_id(Kind.USER, user.id)
        act.detail = f"{user.name} ({user.email}){', an operator' if user.is_operator else ''}"
        return UserOut.of(user)


@router.get("/users/{user}")
def read_user(user: str, db: DatabaseDep, principal: PrincipalDep) -> UserOut:
    authorize(principal, Action.OPERATE)
    with db.reading() as session:
        return UserOut.of(_user(session, user))


@router.patch("/users/{user}")
def update_user(
    user: str, body: UserUpdate, act: Annotated[Change, change("admin.user.update")]
) -> UserOut:
    """Disable or enable a user (a disabled user's tokens stop working), or make or unmake
    an operator.
    """
    with act.transaction() as session:
        target = _user(session, user, lock=True)
        act.target = format_id(Kind.USER, target.id)
        if target.id == act.principal.user_id and (body.disabled or body.operator is False):
            raise Conflict("an operator cannot disable themselves or drop their own operator role")
        changes = []
        if body.disabled is not None:
            target.disabled = body.disabled
            changes.append("disabled" if body.disabled else "enabled")
        if body.operator is not None:
            target.is_operator = body.operator
            changes.append("an operator" if body.operator else "not an operator")
        act.detail = f"{target.name}: {', '.join(changes) or 'unchanged'}"
        return UserOut.of(target)


@router.get("/audit")
def list_audit_events(
    db: DatabaseDep,
    principal: PrincipalDep,
    *,
    action: Annotated[str | None, Query(max_length=40)] = None,
    target: Annotated[
        str | None, Query(max_length=100, description="Only changes made to this (an id).")
    ] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[AuditEventOut]:
    """The audit log, newest first: every login attempt, and every change an operator made
    or tried through `/v1/admin` (actions `admin.…`, e.g. `admin.host.drain`)."""
    authorize(principal, Action.OPERATE)
    query = select(AuditEvent)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if target is not None:
        query = query.where(AuditEvent.target == target)
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

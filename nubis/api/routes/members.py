"""`/v1/projects/{project}/members`: who is in a project, with which role. People join
by invitation (`invitations.py`); a member is found only among the project's own, so
an answer says nothing about anyone else."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response, status
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from nubis.api.deps import DatabaseDep, PrincipalDep
from nubis.api.pagination import Cursor, Limit, Page, fetch_page
from nubis.api.schemas.account import MemberOut, MemberUpdate
from nubis.auth.authz import Action, ProjectAccess, project_access
from nubis.db.refs import ref_clause
from nubis.errors import Conflict, Forbidden, NotFound
from nubis.ids import Kind, format_id
from nubis.models import Membership, Project, Role, User

router = APIRouter(prefix="/v1/projects/{project}/members", tags=["members"])


def _out(membership: Membership, user: User) -> MemberOut:
    return MemberOut(
        user=format_id(Kind.USER, user.id),
        name=user.name,
        email=user.email,
        role=Role(membership.role),
        added_at=membership.created_at,
    )


def _membership(session: Session, access: ProjectAccess, ref: str) -> tuple[Membership, User]:
    """The member `ref` names (an id, a name or an email), sought among the project's
    members only, locked, after the project row: concurrent changes of two owners take
    turns, so neither can leave the project without an owner.
    """
    session.execute(select(Project.id).where(Project.id == access.project.id).with_for_update())
    found = session.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(
            Membership.project_id == access.project.id,
            or_(ref_clause(Kind.USER, User.id, User.name, ref), User.email == ref.lower()),
        )
        .with_for_update(of=Membership)
    ).first()
    if found is None:
        raise NotFound(f"{access.project.name} has no member {ref!r}")
    return found[0], found[1]


def _check_owner_change(access: ProjectAccess, *roles: str) -> None:
    """Only an owner makes, unmakes or removes owners."""
    if Role.OWNER in roles and access.role is not Role.OWNER:
        raise Forbidden("only an owner may make, change or remove an owner")


def _keep_an_owner(session: Session, project_id: UUID) -> None:
    owners = session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.project_id == project_id, Membership.role == Role.OWNER)
    )
    if not owners:
        raise Conflict("a project needs an owner: make someone else owner first")


@router.get("")
def list_members(
    project: str,
    db: DatabaseDep,
    principal: PrincipalDep,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[MemberOut]:
    with db.reading() as session:
        access = project_access(session, principal, project, Action.READ)
        query = (
            select(Membership, User)
            .join(User, User.id == Membership.user_id)
            .where(Membership.project_id == access.project.id)
        )
        rows, next_cursor = fetch_page(
            session, query, Membership.user_id, cursor, limit, key_of=lambda r: r[0].user_id
        )
        return Page(items=[_out(m, u) for m, u in rows], next_cursor=next_cursor)


@router.patch("/{user}")
def update_member(
    project: str, user: str, body: MemberUpdate, db: DatabaseDep, principal: PrincipalDep
) -> MemberOut:
    with db.transaction() as session:
        access = project_access(session, principal, project, Action.MANAGE)
        membership, member = _membership(session, access, user)
        _check_owner_change(access, membership.role, body.role)
        membership.role = body.role
        session.flush()
        _keep_an_owner(session, access.project.id)
        return _out(membership, member)


@router.delete("/{user}", status_code=status.HTTP_204_NO_CONTENT)
def remove_member(project: str, user: str, db: DatabaseDep, principal: PrincipalDep) -> Response:
    with db.transaction() as session:
        access = project_access(session, principal, project, Action.MANAGE)
        membership, _ = _membership(session, access, user)
        _check_owner_change(access, membership.role)
        session.delete(membership)
        session.flush()
        _keep_an_owner(session, access.project.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

"""`/v1/projects/{project}/members`: who is in a project, with which role."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response, status
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from nubis.api.deps import DatabaseDep, PrincipalDep
from nubis.api.pagination import Cursor, Limit, Page, fetch_page
from nubis.api.schemas.account import MemberAdd, MemberOut, MemberUpdate
from nubis.auth.authz import Action, ProjectAccess, project_access
from nubis.errors import Conflict, Forbidden, NotFound
from nubis.ids import Kind, format_id
from nubis.models import Membership, Project, Role, User
from nubis.names import ref_clause

router = APIRouter(prefix="/v1/projects/{project}/members", tags=["members"])


def _out(membership: Membership, user: User) -> MemberOut:
    return MemberOut(
        user=format_id(Kind.USER, user.id),
        name=user.name,
        email=user.email,
        role=Role(membership.role),
        added_at=membership.created_at,
    )


def _user(session: Session, ref: str) -> User:
    """The user `ref` names: an id, a name or an email."""
    user = session.scalars(
        select(User).where(
            or_(ref_clause(Kind.USER, User.id, User.name, ref), User.email == ref.lower())
        )
    ).first()
    if user is None:
        raise NotFound(f"no user {ref!r}")
    return user


def _membership(session: Session, access: ProjectAccess, ref: str) -> tuple[Membership, User]:
    """The member `ref` names, locked, after the project row: concurrent changes of two
    owners take turns, so neither can leave the project without an owner.
    """
    session.execute(select(Project.id).where(Project.id == access.project.id).with_for_update())
    user = _user(session, ref)
    membership = session.get(Membership, (access.project.id, user.id), with_for_update=True)
    if membership is None:
        raise NotFound(f"{user.name} is not a member of {access.project.name}")
    return membership, user


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


@router.post("", status_code=status.HTTP_201_CREATED)
def add_member(
    project: str, body: MemberAdd, db: DatabaseDep, principal: PrincipalDep
) -> MemberOut:
    with db.transaction() as session:
        access = project_access(session, principal, project, Action.MANAGE)
        _check_owner_change(access, body.role)
        user = _user(session, body.user)
        if session.get(Membership, (access.project.id, user.id)) is not None:
            raise Conflict(f"{user.name} is a member already; change their role instead")
        membership = Membership(project_id=access.project.id, user_id=user.id, role=body.role)
        session.add(membership)
        session.flush()
        return _out(membership, user)


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

"""Authorization, in one place: `authorize` decides whether a principal may do an action.

Project roles form a ladder: a viewer reads; a member also creates and changes the
project's resources; an admin also manages members and tokens; an owner also deletes
the project. A project the principal is not in (or that its token is not scoped to)
does not exist for it: NotFound, exactly as for a project that does not exist.
Operators may use `/v1/admin`; in projects they have only the roles they were given.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

from sqlalchemy import Select, and_, select
from sqlalchemy.orm import Session

from nubis.db.refs import ref_clause
from nubis.errors import Forbidden, NotFound
from nubis.ids import Kind
from nubis.models import Membership, Project, Role


@dataclass(frozen=True)
class Principal:
    """Who makes a request: a user, through one of their tokens."""

    user_id: UUID
    user_name: str
    is_operator: bool
    token_id: UUID
    project_scope: UUID | None
    """The one project the token may act in; None for an unscoped token."""


@dataclass(frozen=True)
class ProjectAccess:
    """A project and the principal's role in it, as found by a query scoped to them."""

    project: Project
    role: Role


class Action(StrEnum):
    READ_ACCOUNT = "read_account"
    """See one's own user."""
    MANAGE_ACCOUNT = "manage_account"
    """Create projects, manage one's own tokens and second factor."""
    READ = "read"
    WRITE = "write"
    MANAGE = "manage"
    DELETE_PROJECT = "delete_project"
    OPERATE = "operate"
    """Operator routes under /v1/admin."""


REQUIRED_ROLE: dict[Action, Role] = {
    Action.READ: Role.VIEWER,
    Action.WRITE: Role.MEMBER,
    Action.MANAGE: Role.ADMIN,
    Action.DELETE_PROJECT: Role.OWNER,
}


def authorize(principal: Principal, action: Action, access: ProjectAccess | None = None) -> None:
    """Return if `principal` may do `action` (on `access.project`), else raise."""
    required = REQUIRED_ROLE.get(action)
    if required is not None:
        if access is None or principal.project_scope not in (None, access.project.id):
            raise NotFound("no such project")
        if access.role.rank < required.rank:
            raise Forbidden(
                f"your role in project {access.project.name} is {access.role}; "
                f"this needs {required} or above"
            )
        return
    if action is Action.READ_ACCOUNT:
        return
    if principal.project_scope is not None:
        raise Forbidden("this token is scoped to one project; it cannot do this")
    if action is Action.OPERATE and not principal.is_operator:
        raise Forbidden("only operators may do this")


def visible_projects(principal: Principal) -> Select[Project, str]:
    """The projects `principal` may see, with its role in each, as a query to refine."""
    query = select(Project, Membership.role).join(
        Membership,
        and_(Membership.project_id == Project.id, Membership.user_id == principal.user_id),
    )
    if principal.project_scope is not None:
        query = query.where(Project.id == principal.project_scope)
    return query


def project_access(
    session: Session, principal: Principal, ref: str, action: Action
) -> ProjectAccess:
    """The project `ref` names (a name or an id), if `principal` may do `action` in it."""
    row = session.execute(
        visible_projects(principal).where(ref_clause(Kind.PROJECT, Project.id, Project.name, ref))
    ).one_or_none()
    if row is None:
        raise NotFound(f"no project {ref!r}")
    access = ProjectAccess(project=row[0], role=Role(row[1]))
    authorize(principal, action, access)
    return access

"""Invitations to projects: a project's admins make and revoke them
(`/v1/projects/{project}/invitations`), the invited user accepts or declines them
(`/v1/invitations`)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from sqlalchemy.orm import Session

from nubis.api.deps import DatabaseDep, PrincipalDep
from nubis.api.pagination import Cursor, Limit, Page, fetch_page
from nubis.api.schemas.account import InvitationCreate, InvitationOut, ProjectOut
from nubis.auth import invitations
from nubis.auth.authz import Action, Principal, authorize, project_access
from nubis.models import Invitation, Project, User

router = APIRouter(tags=["invitations"])


def _me(session: Session, principal: Principal) -> User:
    user = session.get(User, principal.user_id)
    assert user is not None  # the token was just checked, and users are never deleted
    return user


@router.get("/v1/projects/{project}/invitations")
def list_project_invitations(
    project: str,
    db: DatabaseDep,
    principal: PrincipalDep,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[InvitationOut]:
    """The project's pending invitations (admins)."""
    with db.reading() as session:
        access = project_access(session, principal, project, Action.MANAGE)
        rows, next_cursor = fetch_page(
            session,
            invitations.of_project(access.project.id),
            Invitation.id,
            cursor,
            limit,
            key_of=lambda r: r[0].id,
        )
        name = access.project.name
        return Page(
            items=[InvitationOut.of(i, name, inviter) for i, inviter in rows],
            next_cursor=next_cursor,
        )


@router.post("/v1/projects/{project}/invitations", status_code=status.HTTP_201_CREATED)
def invite(
    project: str, body: InvitationCreate, db: DatabaseDep, principal: PrincipalDep
) -> InvitationOut:
    """Invite whoever has an account with this email (admins; only an owner invites an
    owner). The answer is the same whether or not such an account exists; the user
    sees the invitation in `GET /v1/invitations` for 7 days."""
    with db.transaction() as session:
        access = project_access(session, principal, project, Action.MANAGE)
        made = invitations.invite(session, access, principal.user_id, body.email, body.role)
        return InvitationOut.of(made, access.project.name, principal.user_name)


@router.delete(
    "/v1/projects/{project}/invitations/{invitation}", status_code=status.HTTP_204_NO_CONTENT
)
def revoke_invitation(
    project: str, invitation: str, db: DatabaseDep, principal: PrincipalDep
) -> Response:
    """Withdraw a pending invitation (admins); it can no longer be accepted."""
    with db.transaction() as session:
        access = project_access(session, principal, project, Action.MANAGE)
        session.delete(invitations.find_in_project(session, access.project.id, invitation))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/v1/invitations")
def list_invitations(
    db: DatabaseDep, principal: PrincipalDep, limit: Limit = 100, cursor: Cursor = None
) -> Page[InvitationOut]:
    """The pending invitations to the caller's email."""
    authorize(principal, Action.MANAGE_ACCOUNT)
    with db.reading() as session:
        rows, next_cursor = fetch_page(
            session,
            invitations.of_user(principal.user_id),
            Invitation.id,
            cursor,
            limit,
            key_of=lambda r: r[0].id,
        )
        return Page(
            items=[InvitationOut.of(i, name, inviter) for i, name, inviter in rows],
            next_cursor=next_cursor,
        )


@router.post("/v1/invitations/{invitation}/accept")
def accept_invitation(invitation: str, db: DatabaseDep, principal: PrincipalDep) -> ProjectOut:
    """Join the project with the role the invitation gives; the project, with that role."""
    authorize(principal, Action.MANAGE_ACCOUNT)
    with db.transaction() as session:
        me = _me(session, principal)
        found = invitations.find_for_user(session, me, invitation)
        membership = invitations.accept(session, me, found)
        project = session.get_one(Project, membership.project_id)
        return ProjectOut.of(project, membership.role)


@router.post("/v1/invitations/{invitation}/decline", status_code=status.HTTP_204_NO_CONTENT)
def decline_invitation(invitation: str, db: DatabaseDep, principal: PrincipalDep) -> Response:
    """Turn the invitation down; it is gone."""
    authorize(principal, Action.MANAGE_ACCOUNT)
    with db.transaction() as session:
        session.delete(invitations.find_for_user(session, _me(session, principal), invitation))
    return Response(status_code=status.HTTP_204_NO_CONTENT)

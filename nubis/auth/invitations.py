"""Invitations: how someone joins a project. A project's admin offers a role to an email
address; the user whose account has that address sees the offer and accepts it (a
membership) or declines it.

Inviting tells nothing about any user: the answer is the same whether or not an
account has the address, and an invitation nobody takes expires after a week. Only an
owner invites an owner, and an owner's invitation to be owner holds only while its
inviter is an owner still.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from sqlalchemy import Select, delete, select
from sqlalchemy.orm import Session, aliased

from nubis.auth.authz import ProjectAccess
from nubis.clock import now
from nubis.errors import Conflict, Forbidden, NotFound
from nubis.ids import Kind, looks_like_id, parse_id
from nubis.models import Invitation, Membership, Project, Role, User
from nubis.names import check_email

LIFETIME = timedelta(days=7)


def invite(
    session: Session, access: ProjectAccess, inviter: UUID, email: str, role: Role
) -> Invitation:
    """A new invitation to `access.project` for whoever has `email`."""
    if role is Role.OWNER and access.role is not Role.OWNER:
        raise Forbidden("only an owner may invite an owner")
    email = check_email(email)
    project = access.project
    member = session.scalar(
        select(Membership.user_id)
        .join(User, User.id == Membership.user_id)
        .where(Membership.project_id == project.id, User.email == email)
    )
    if member is not None:
        raise Conflict(f"a member of {project.name} has the email {email} already")
    # The project's expired invitations go first: one of them may be to this address.
    session.execute(
        delete(Invitation).where(
            Invitation.project_id == project.id, Invitation.expires_at <= now()
        )
    )
    pending = select(Invitation.id).where(
        Invitation.project_id == project.id, Invitation.email == email
    )
    if session.scalar(pending) is not None:
        raise Conflict(f"{email} has a pending invitation to {project.name}; revoke it first")
    at = now()
    made = Invitation(
        project_id=project.id,
        email=email,
        role=role,
        invited_by=inviter,
        created_at=at,
        expires_at=at + LIFETIME,
    )
    session.add(made)
    session.flush()
    return made


Inviter = aliased(User, name="inviter")
"""The user who made an invitation, joined for their name."""


def of_project(project_id: UUID) -> Select[Invitation, str | None]:
    """The project's pending invitations, with their inviters' names."""
    return (
        select(Invitation, Inviter.name)
        .outerjoin(Inviter, Inviter.id == Invitation.invited_by)
        .where(Invitation.project_id == project_id, Invitation.expires_at > now())
    )


def of_user(user_id: UUID) -> Select[Invitation, str, str | None]:
    """The pending invitations to the user's email, with the projects' and inviters'
    names."""
    invitee = aliased(User, name="invitee")
    return (
        select(Invitation, Project.name, Inviter.name)
        .join(invitee, invitee.email == Invitation.email)
        .join(Project, Project.id == Invitation.project_id)
        .outerjoin(Inviter, Inviter.id == Invitation.invited_by)
        .where(invitee.id == user_id, Invitation.expires_at > now())
    )


def _parsed(ref: str) -> UUID | None:
    return parse_id(Kind.INVITATION, ref) if looks_like_id(Kind.INVITATION, ref) else None


def find_for_user(session: Session, user: User, ref: str) -> Invitation:
    """The pending invitation `ref` (an id) to `user`'s email, locked."""
    key = _parsed(ref)
    found = None
    if key is not None:
        found = session.scalars(
            select(Invitation)
            .where(
                Invitation.id == key,
                Invitation.email == user.email,
                Invitation.expires_at > now(),
            )
            .with_for_update()
        ).one_or_none()
    if found is None:
        raise NotFound(f"no invitation {ref!r} for you")
    return found


def find_in_project(session: Session, project_id: UUID, ref: str) -> Invitation:
    """The pending invitation `ref` (an id) to the project."""
    key = _parsed(ref)
    found = None
    if key is not None:
        found = session.scalars(
            of_project(project_id).with_only_columns(Invitation).where(Invitation.id == key)
        ).one_or_none()
    if found is None:
        raise NotFound(f"no pending invitation {ref!r}")
    return found


def accept(session: Session, user: User, invitation: Invitation) -> Membership:
    """Make `user` a member as the invitation says; the invitation is used up."""
    project_id = invitation.project_id
    if session.get(Membership, (project_id, user.id)) is not None:
        raise Conflict("you are a member of this project already")
    if invitation.role == Role.OWNER:
        inviter = None
        if invitation.invited_by is not None:
            inviter = session.get(Membership, (project_id, invitation.invited_by))
        if inviter is None or inviter.role != Role.OWNER:
            raise Conflict("this invitation to be owner was made by someone no longer an owner")
    membership = Membership(project_id=project_id, user_id=user.id, role=invitation.role)
    session.add(membership)
    session.delete(invitation)
    session.flush()
    return membership

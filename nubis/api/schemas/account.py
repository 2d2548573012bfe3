"""Bodies of the account routes: users, projects, members and invitations, tokens, SSH
keys, audit."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from nubis.api.schemas.common import Email, Input, Name
from nubis.ids import Kind, format_id
from nubis.models import ApiToken, AuditEvent, Invitation, Project, Role, SshKey, User
from nubis.units import Duration


class UserOut(BaseModel):
    id: str
    name: str
    email: str
    is_operator: bool
    totp_enabled: bool
    disabled: bool
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            id=format_id(Kind.USER, user.id),
            name=user.name,
            email=user.email,
            is_operator=user.is_operator,
            totp_enabled=user.totp_enabled,
            disabled=user.disabled,
            created_at=user.created_at,
        )


class UserCreate(Input):
    name: Name
    email: Email
    password: str = Field(min_length=1, max_length=1024)
    operator: bool = False


class UserUpdate(Input):
    disabled: bool | None = None
    operator: bool | None = None


class LoginRequest(Input):
    email: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=1024)
    totp_code: str | None = Field(default=None, max_length=16)
    token_name: Name = "login"
    expires_in: Duration = "30d"


class TotpEnrollment(BaseModel):
    secret: str
    """Base32; type it into an authenticator app, or import `uri`."""
    uri: str


class TotpCodeIn(Input):
    code: str = Field(min_length=1, max_length=16)


class ProjectCreate(Input):
    name: Name


class ProjectOut(BaseModel):
    id: str
    name: str
    role: Role
    """The caller's role in it."""
    created_at: datetime

    @classmethod
    def of(cls, project: Project, role: str) -> ProjectOut:
        return cls(
            id=format_id(Kind.PROJECT, project.id),
            name=project.name,
            role=Role(role),
            created_at=project.created_at,
        )


class InvitationCreate(Input):
    email: Email
    """Whoever has an account with this address may accept; nobody else."""
    role: Role = Field(default=Role.MEMBER, strict=False)  # strict takes only Role objects


class InvitationOut(BaseModel):
    id: str
    project: str
    """The project's id."""
    project_name: str
    email: str
    role: Role
    """The role accepting it gives."""
    invited_by: str | None
    """The inviter's name."""
    created_at: datetime
    expires_at: datetime

    @classmethod
    def of(cls, invitation: Invitation, project_name: str, inviter: str | None) -> InvitationOut:
        return cls(
            id=format_id(Kind.INVITATION, invitation.id),
            project=format_id(Kind.PROJECT, invitation.project_id),
            project_name=project_name,
            email=invitation.email,
            role=Role(invitation.role),
            invited_by=inviter,
            created_at=invitation.created_at,
            expires_at=invitation.expires_at,
        )


class MemberUpdate(Input):
    role: Role = Field(strict=False)


class MemberOut(BaseModel):
    user: str
    """The user's id."""
    name: str
    email: str
    role: Role
    added_at: datetime


class TokenCreate(Input):
    name: Name
    project: str | None = Field(
        default=None, max_length=64, description="Scope the token to this one project."
    )
    expires_in: Duration | None = None


class TokenOut(BaseModel):
    id: str
    name: str
    user: str
    """The user's name."""
    project: str | None
    """The id of the one project it may act in; null for all of the user's projects."""
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, token: ApiToken, user_name: str) -> TokenOut:
        return cls(
            id=format_id(Kind.TOKEN, token.id),
            name=token.name,
            user=user_name,
            project=format_id(Kind.PROJECT, token.project_id) if token.project_id else None,
            expires_at=token.expires_at,
            revoked_at=token.revoked_at,
            created_at=token.created_at,
        )


class TokenCreated(TokenOut):
    secret: str
    """Shown once: it is not kept and cannot be shown again."""

    @classmethod
    def of_new(cls, token: ApiToken, user_name: str, secret: str) -> TokenCreated:
        return cls(**TokenOut.of(token, user_name).model_dump(), secret=secret)


class SshKeyCreate(Input):
    name: Name
    public_key: str = Field(min_length=1, max_length=16_384)


class SshKeyOut(BaseModel):
    id: str
    name: str
    fingerprint: str
    public_key: str
    created_at: datetime

    @classmethod
    def of(cls, key: SshKey) -> SshKeyOut:
        return cls(
            id=format_id(Kind.SSH_KEY, key.id),
            name=key.name,
            fingerprint=key.fingerprint,
            public_key=key.public_key,
            created_at=key.created_at,
        )


class AuditEventOut(BaseModel):
    id: str
    at: datetime
    action: str
    outcome: str
    user: str | None
    email: str | None
    source: str | None
    target: str | None
    """What an operator's change was made to: its id, or the name given."""
    detail: str | None

    @classmethod
    def of(cls, event: AuditEvent) -> AuditEventOut:
        return cls(
            id=format_id(Kind.EVENT, event.id),
            at=event.at,
            action=event.action,
            outcome=event.outcome,
            user=format_id(Kind.USER, event.user_id) if event.user_id else None,
            email=event.email,
            source=event.source,
            target=event.target,
            detail=event.detail,
        )

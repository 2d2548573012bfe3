"""Accounts: users, projects, memberships and invitations, API tokens, SSH keys, and the
login audit."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from nubis.clock import now
from nubis.db.base import Base
from nubis.ids import new_id


class User(Base):
    __tablename__ = "user_account"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    """Lowercase; the login name."""
    password_hash: Mapped[str] = mapped_column(String(200))
    """argon2id, in the PHC string format."""
    totp_seed: Mapped[bytes | None] = mapped_column(LargeBinary)
    """The TOTP seed, sealed with the data dir's secret key; set while enrolling."""
    totp_enabled: Mapped[bool] = mapped_column(default=False)
    totp_last_step: Mapped[int | None]
    """The time step of the last accepted code, so a code is never accepted twice."""
    is_operator: Mapped[bool] = mapped_column(default=False)
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=now)


class Project(Base):
    __tablename__ = "project"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=now)


class Membership(Base):
    __tablename__ = "membership"

    project_id: Mapped[UUID] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[UUID] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=now)

    user: Mapped[User] = relationship(lazy="raise")

    __table_args__ = (
        CheckConstraint("role IN ('viewer', 'member', 'admin', 'owner')", name="role"),
    )


class Invitation(Base):
    """A role in a project offered to whoever has an email address: a membership once
    the user with that address accepts it."""

    __tablename__ = "invitation"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    project_id: Mapped[UUID] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(254), index=True)
    """Lowercase, as users' are."""
    role: Mapped[str] = mapped_column(String(16))
    invited_by: Mapped[UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=now)
    expires_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("project_id", "email"),
        CheckConstraint("role IN ('viewer', 'member', 'admin', 'owner')", name="role"),
    )


class ApiToken(Base):
    """A bearer token. Only the SHA-256 of its secret is kept; the secret is shown once."""

    __tablename__ = "api_token"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    user_id: Mapped[UUID] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    project_id: Mapped[UUID | None] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    """When set, the token acts only in this project."""
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=now)


class SshKey(Base):
    __tablename__ = "ssh_key"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    project_id: Mapped[UUID] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(32))
    public_key: Mapped[str] = mapped_column(Text)
    """Normalized to `type base64 [comment]`."""
    fingerprint: Mapped[str] = mapped_column(String(64))
    """`SHA256:…`, as `ssh-keygen -l` prints it."""
    created_at: Mapped[datetime] = mapped_column(default=now)

    __table_args__ = (
        UniqueConstraint("project_id", "name"),
        UniqueConstraint("project_id", "fingerprint"),
    )


class AuditEvent(Base):
    """Something security-relevant that happened: every login attempt, and every change
    an operator made or tried through `/v1/admin` (`admin.host.drain`, …)."""

    __tablename__ = "audit_event"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    at: Mapped[datetime] = mapped_column(default=now, index=True)
    action: Mapped[str] = mapped_column(String(40))
    outcome: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), index=True
    )
    email: Mapped[str | None] = mapped_column(String(254))
    """As given, so attempts on accounts that do not exist are visible too."""
    source: Mapped[str | None] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(100))
    """What an operator's change was made to: its public id (`host-…`), or the name given."""
    detail: Mapped[str | None] = mapped_column(Text)


class LoginThrottle(Base):
    """Recent failed logins of one account or one source address."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(330), primary_key=True)
    """`account:<email>` or `source:<address>`."""
    failures: Mapped[int] = mapped_column(default=0)
    window_start: Mapped[datetime]
    blocked_until: Mapped[datetime | None]

    __table_args__ = (CheckConstraint("failures >= 0", name="failures"),)


class IdempotentRequest(Base):
    """The answer to a POST made with an Idempotency-Key, to give again on a retry."""

    __tablename__ = "idempotent_request"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    token_id: Mapped[UUID] = mapped_column(ForeignKey("api_token.id", ondelete="CASCADE"))
    """The token the first request authenticated with: keys are per token."""
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    """A keyed digest (SecretBox.digest) of the path, query and body: a body may hold a
    password."""
    status: Mapped[int | None]
    """None while the first request is still being answered."""
    content_type: Mapped[str | None] = mapped_column(String(100))
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    """Sealed with the data dir's secret key: an answer may hold a secret (a new token's,
    a TOTP seed)."""
    created_at: Mapped[datetime] = mapped_column(default=now, index=True)

    __table_args__ = (UniqueConstraint("token_id", "key"),)

"""API tokens: random bearer secrets, kept only as SHA-256 digests."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from uuid import UUID

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from nubis.auth.authz import Principal
from nubis.clock import now
from nubis.errors import InvalidInput, Unauthenticated
from nubis.models import ApiToken, User
from nubis.units import parse_duration

PREFIX = "nubis_"
MAX_LIFETIME = timedelta(days=366)


def lifetime(expires_in: str | None) -> timedelta | None:
    """How long a token asked to expire in (`30d`) lives; None for never."""
    if expires_in is None:
        return None
    value = parse_duration(expires_in)
    if value > MAX_LIFETIME:
        raise InvalidInput(
            f"a token lives at most {MAX_LIFETIME.days} days",
            errors={"expires_in": f"at most {MAX_LIFETIME.days}d"},
        )
    return value


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue(
    session: Session,
    user_id: UUID,
    name: str,
    *,
    project_id: UUID | None = None,
    lifetime: timedelta | None = None,
) -> tuple[ApiToken, str]:
    """A new token and its secret, which is not kept and cannot be shown again."""
    secret = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user_id,
        name=name,
        secret_sha256=digest(secret),
        project_id=project_id,
        expires_at=now() + lifetime if lifetime is not None else None,
    )
    session.add(token)
    session.flush()
    return token, secret


def authenticate(session: Session, secret: str) -> Principal:
    """Who holds `secret`; Unauthenticated unless it is a live token of an enabled user."""
    return _live(session, ApiToken.secret_sha256 == digest(secret))


def principal_of(session: Session, token_id: UUID) -> Principal:
    """Who acts through the token `token_id`, while it lives (as `authenticate`): for
    what outlasts a request made with it, a console for one."""
    return _live(session, ApiToken.id == token_id)


def _live(session: Session, which: ColumnElement[bool]) -> Principal:
    at = now()
    row = session.execute(
        select(ApiToken.id, ApiToken.project_id, User.id, User.name, User.is_operator)
        .join(User, User.id == ApiToken.user_id)
        .where(
            which,
            ApiToken.revoked_at.is_(None),
            or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > at),
            User.disabled.is_(False),
        )
    ).one_or_none()
    if row is None:
        raise Unauthenticated("the token is not valid: unknown, expired or revoked")
    token_id, scope, user_id, user_name, is_operator = row
    return Principal(
        user_id=user_id,
        user_name=user_name,
        is_operator=is_operator,
        token_id=token_id,
        project_scope=scope,
    )

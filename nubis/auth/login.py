"""Logging in: email and password (and a TOTP code when enabled) for an API token.

`log_in` writes its audit event and throttle counts in the caller's transaction and
returns the error rather than raising it, so that a refused login is still recorded
when the caller commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from nubis.auth import audit, passwords, throttle, tokens
from nubis.auth.accounts import consume_code
from nubis.auth.audit import Outcome
from nubis.errors import NubisError, SecondFactorRequired, TooManyRequests, Unauthenticated
from nubis.models import ApiToken, User
from nubis.secretbox import SecretBox

ACTION = "login"
DEFAULT_LIFETIME = timedelta(days=30)


@dataclass(frozen=True)
class Attempt:
    email: str
    password: str
    totp_code: str | None
    source: str
    token_name: str
    lifetime: timedelta | None = DEFAULT_LIFETIME


@dataclass(frozen=True)
class Granted:
    user: User
    token: ApiToken
    secret: str


def log_in(session: Session, box: SecretBox, attempt: Attempt) -> Granted | NubisError:
    """A new token and its secret, or the error to answer with."""
    email = attempt.email.strip().lower()
    account, source = throttle.account_key(email), throttle.source_key(attempt.source)

    def refuse(error: NubisError, outcome: Outcome, detail: str, user: User | None) -> NubisError:
        audit.record(
            session,
            ACTION,
            outcome,
            user_id=user.id if user else None,
            email=email,
            source=attempt.source,
            detail=detail,
        )
        return error

    wait = throttle.blocked_for(session, [account, source])
    if wait:
        return refuse(
            TooManyRequests(f"too many failed logins; try again in {wait} s", retry_after=wait),
            Outcome.THROTTLED,
            "refused while blocked",
            None,
        )

    user = session.scalars(select(User).where(User.email == email)).one_or_none()
    if not passwords.verify(user.password_hash if user else None, attempt.password):
        throttle.record_failure(session, account, throttle.ACCOUNT)
        throttle.record_failure(session, source, throttle.SOURCE)
        return refuse(
            Unauthenticated("wrong email or password"),
            Outcome.FAILURE,
            "wrong password" if user else "no such account",
            user,
        )
    assert user is not None
    if user.disabled:
        return refuse(
            Unauthenticated("this account is disabled"), Outcome.FAILURE, "disabled", user
        )
    if user.totp_enabled:
        if not attempt.totp_code:
            return refuse(
                SecondFactorRequired("this account needs a TOTP code as well"),
                Outcome.FAILURE,
                "no TOTP code",
                user,
            )
        if not consume_code(session, box, user, attempt.totp_code):
            throttle.record_failure(session, account, throttle.ACCOUNT)
            throttle.record_failure(session, source, throttle.SOURCE)
            return refuse(
                Unauthenticated("the TOTP code is wrong or was used already"),
                Outcome.FAILURE,
                "wrong or reused TOTP code",
                user,
            )

    throttle.clear(session, account)
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(attempt.password)
    token, secret = tokens.issue(session, user.id, attempt.token_name, lifetime=attempt.lifetime)
    audit.record(
        session, ACTION, Outcome.SUCCESS, user_id=user.id, email=email, source=attempt.source
    )
    return Granted(user=user, token=token, secret=secret)

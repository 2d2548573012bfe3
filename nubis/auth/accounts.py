"""User accounts: creating them, and their TOTP second factor."""

from __future__ import annotations

from typing import Any

from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.orm import Session

from nubis.auth import passwords, totp
from nubis.errors import Conflict, InvalidInput
from nubis.models import User
from nubis.names import check_email, check_name
from nubis.secretbox import SecretBox


def create_user(
    session: Session, name: str, email: str, password: str, *, operator: bool = False
) -> User:
    """A new, enabled user; Conflict if the name or the email is taken."""
    name = check_name(name, "name")
    email = check_email(email)
    passwords.check_strength(password)
    taken = session.scalars(
        select(User.name, User.email).where(or_(User.name == name, User.email == email))
    ).first()
    if taken is not None:
        raise Conflict(f"a user with the name {name!r} or the email {email!r} exists already")
    user = User(
        name=name,
        email=email,
        password_hash=passwords.hash_password(password),
        is_operator=operator,
    )
    session.add(user)
    session.flush()
    return user


def consume_code(session: Session, box: SecretBox, user: User, code: str) -> bool:
    """Whether `code` is a valid TOTP code of `user` never used before; if so, it is now used.

    The step is recorded with a compare-and-set, so of two requests racing with one
    code only one succeeds.
    """
    if user.totp_seed is None:
        return False
    seed = box.open(user.totp_seed).decode()
    step = totp.accepted_step(seed, code, user.totp_last_step)
    if step is None:
        return False
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(User)
        .where(
            User.id == user.id,
            or_(User.totp_last_step.is_(None), User.totp_last_step < step),
        )
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    )
    won = result.rowcount == 1
    if won:
        user.totp_last_step = step
    return won


def begin_totp(session: Session, box: SecretBox, user: User) -> str:
    """Start enrolling: a new seed (returned once, as an otpauth:// URI's secret)."""
    if user.totp_enabled:
        raise Conflict("TOTP is enabled already; disable it first to enrol a new device")
    seed = totp.new_seed()
    user.totp_seed = box.seal(seed.encode())
    user.totp_last_step = None
    return seed


def confirm_totp(session: Session, box: SecretBox, user: User, code: str) -> None:
    """Finish enrolling with a first code from the device: from now on logins need one."""
    if user.totp_enabled:
        raise Conflict("TOTP is enabled already")
    if user.totp_seed is None:
        raise Conflict("no TOTP enrolment is under way; start one first")
    if not consume_code(session, box, user, code):
        raise InvalidInput("the TOTP code is wrong", errors={"code": "wrong code"})
    user.totp_enabled = True


def disable_totp(session: Session, box: SecretBox, user: User, code: str) -> None:
    if not user.totp_enabled:
        raise Conflict("TOTP is not enabled")
    if not consume_code(session, box, user, code):
        raise InvalidInput(
            "the TOTP code is wrong or was used already", errors={"code": "wrong code"}
        )
    user.totp_enabled = False
    user.totp_seed = None
    user.totp_last_step = None

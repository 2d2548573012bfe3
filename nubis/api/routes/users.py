"""`/v1/users/me`: the caller's own account and its TOTP second factor."""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlalchemy.orm import Session

from nubis.api.deps import DatabaseDep, PrincipalDep, SecretBoxDep
from nubis.api.schemas.account import TotpCodeIn, TotpEnrollment, UserOut
from nubis.auth import accounts, totp
from nubis.auth.authz import Action, Principal, authorize
from nubis.models import User

router = APIRouter(prefix="/v1/users/me", tags=["users"])


def _me(session: Session, principal: Principal) -> User:
    user = session.get(User, principal.user_id, with_for_update=True)
    assert user is not None  # the token was just checked, and users are never deleted
    return user


@router.get("")
def read_me(db: DatabaseDep, principal: PrincipalDep) -> UserOut:
    authorize(principal, Action.READ_ACCOUNT)
    with db.reading() as session:
        user = session.get(User, principal.user_id)
        assert user is not None
        return UserOut.of(user)


@router.post("/totp", status_code=status.HTTP_201_CREATED)
def begin_totp(db: DatabaseDep, box: SecretBoxDep, principal: PrincipalDep) -> TotpEnrollment:
    """Start enrolling a TOTP device; confirm with a first code to turn it on."""
    authorize(principal, Action.MANAGE_ACCOUNT)
    with db.transaction() as session:
        user = _me(session, principal)
        seed = accounts.begin_totp(session, box, user)
        return TotpEnrollment(secret=seed, uri=totp.provisioning_uri(seed, user.email))


@router.post("/totp/confirm")
def confirm_totp(
    body: TotpCodeIn, db: DatabaseDep, box: SecretBoxDep, principal: PrincipalDep
) -> UserOut:
    """Turn TOTP on with a code from the enrolled device; logins need a code from now on."""
    authorize(principal, Action.MANAGE_ACCOUNT)
    with db.transaction() as session:
        user = _me(session, principal)
        accounts.confirm_totp(session, box, user, body.code)
        return UserOut.of(user)


@router.post("/totp/disable")
def disable_totp(
    body: TotpCodeIn, db: DatabaseDep, box: SecretBoxDep, principal: PrincipalDep
) -> UserOut:
    """Turn TOTP off; it takes a current code, so a stolen token alone cannot."""
    authorize(principal, Action.MANAGE_ACCOUNT)
    with db.transaction() as session:
        user = _me(session, principal)
        accounts.disable_totp(session, box, user, body.code)
        return UserOut.of(user)

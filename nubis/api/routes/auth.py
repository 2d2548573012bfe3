"""`POST /v1/auth/token`: a password (and TOTP code) for an API token."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from nubis.api.deps import DatabaseDep, PrincipalDep, SecretBoxDep, SourceDep
from nubis.api.schemas.account import LoginRequest, TokenCreated
from nubis.auth import tokens
from nubis.auth.authz import Action, authorize
from nubis.auth.login import Attempt, log_in
from nubis.clock import now
from nubis.errors import NubisError
from nubis.models import ApiToken

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.post("/token", status_code=status.HTTP_201_CREATED)
def log_in_for_token(
    body: LoginRequest, db: DatabaseDep, box: SecretBoxDep, source: SourceDep
) -> TokenCreated:
    """Log in: exchange an email and password, plus a TOTP code when the account has
    one, for a new API token. Failed attempts are slowed down per account and per
    source address, and every attempt is in the audit log.
    """
    attempt = Attempt(
        email=body.email,
        password=body.password,
        totp_code=body.totp_code,
        source=source,
        token_name=body.token_name,
        lifetime=tokens.lifetime(body.expires_in),
    )
    with db.transaction() as session:
        outcome = log_in(session, box, attempt)
        if not isinstance(outcome, NubisError):
            return TokenCreated.of_new(outcome.token, outcome.user.name, outcome.secret)
    # Refused: raised only now, after the audit event and throttle counts are committed.
    raise outcome


@router.delete("/token", status_code=status.HTTP_204_NO_CONTENT)
def log_out(db: DatabaseDep, principal: PrincipalDep) -> Response:
    """Log out: revoke the token this request was made with."""
    authorize(principal, Action.READ_ACCOUNT)
    with db.transaction() as session:
        token = session.get(ApiToken, principal.token_id)
        if token is not None:
            token.revoked_at = now()
    return Response(status_code=status.HTTP_204_NO_CONTENT)

"""The user's own account: their second factor (TOTP, enrolled with a QR code), their
API tokens (a new one's secret shown once) and the invitations to projects they have."""

from __future__ import annotations

from collections.abc import Callable

import segno
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from nubis.api.deps import DatabaseDep, SecretBoxDep
from nubis.api.routes import invitations, tokens, users
from nubis.api.schemas.account import (
    TokenCreate,
    TokenCreated,
    TotpCodeIn,
    TotpEnrollment,
    UserOut,
)
from nubis.auth.authz import Principal
from nubis.db import Database
from nubis.errors import NubisError
from nubis.secretbox import SecretBox
from nubis.web import pages
from nubis.web.deps import CHANGE, SignedIn, form_of

router = APIRouter(prefix="/account", include_in_schema=False)

TotpChange = Callable[[TotpCodeIn, Database, SecretBox, Principal], UserOut]


def qr_svg(uri: str) -> str:
    """The enrolment URI as an inline SVG QR code, for an authenticator app's camera."""
    return str(segno.make(uri, error="m").svg_inline(scale=4, title="TOTP enrolment code"))


def _page(
    request: Request,
    db: Database,
    principal: Principal,
    *,
    enrollment: TotpEnrollment | None = None,
    created: TokenCreated | None = None,
    form: dict[str, str] | None = None,
    error: NubisError | None = None,
) -> Response:
    return pages.render(
        request,
        "account.html",
        principal=principal,
        user=users.read_me(db, principal),
        projects=pages.switcher(db, principal),
        enrollment=enrollment,
        qr=qr_svg(enrollment.uri) if enrollment else None,
        tokens=tokens.list_tokens(db, principal, limit=100, cursor=None).items,
        created=created,
        invitations=invitations.list_invitations(db, principal, limit=100, cursor=None).items,
        form=form or {},
        error=error,
    )


@router.get("")
def account_page(request: Request, db: DatabaseDep, principal: SignedIn) -> Response:
    return _page(request, db, principal)


@router.post("/totp", dependencies=CHANGE)
def begin_totp(
    request: Request, db: DatabaseDep, box: SecretBoxDep, principal: SignedIn
) -> Response:
    try:
        enrollment = users.begin_totp(db, box, principal)
    except NubisError as error:
        return _page(request, db, principal, error=error)
    return _page(request, db, principal, enrollment=enrollment)


async def _with_code(
    request: Request, db: Database, box: SecretBox, principal: Principal, change: TotpChange
) -> Response:
    """Turn TOTP on or off with the code the form sends, as the API's route does."""
    form = await form_of(request)
    try:
        change(TotpCodeIn(code=form.get("code", "").strip()), db, box, principal)
    except (ValidationError, NubisError) as refused:
        return _page(request, db, principal, error=pages.refusal(refused))
    return pages.redirect("/account")


@router.post("/totp/confirm", dependencies=CHANGE)
async def confirm_totp(
    request: Request, db: DatabaseDep, box: SecretBoxDep, principal: SignedIn
) -> Response:
    return await _with_code(request, db, box, principal, users.confirm_totp)


@router.post("/totp/disable", dependencies=CHANGE)
async def disable_totp(
    request: Request, db: DatabaseDep, box: SecretBoxDep, principal: SignedIn
) -> Response:
    return await _with_code(request, db, box, principal, users.disable_totp)


@router.post("/tokens", dependencies=CHANGE)
async def create_token(request: Request, db: DatabaseDep, principal: SignedIn) -> Response:
    """A new API token; the page shows its secret this once."""
    form = await form_of(request)
    fields = {"name": form.get("name", "")}
    for name in ("project", "expires_in"):
        if form.get(name, "").strip():
            fields[name] = form[name].strip()
    try:
        created = tokens.create_token(TokenCreate(**fields), db, principal)
    except (ValidationError, NubisError) as refused:
        return _page(request, db, principal, form=form, error=pages.refusal(refused))
    return _page(request, db, principal, created=created)


@router.post("/tokens/{token}/delete", dependencies=CHANGE)
def revoke_token(request: Request, token: str, db: DatabaseDep, principal: SignedIn) -> Response:
    tokens.revoke_token(token, db, principal)
    return pages.redirect("/account")


@router.post("/invitations/{invitation}/accept", dependencies=CHANGE)
def accept(request: Request, invitation: str, db: DatabaseDep, principal: SignedIn) -> Response:
    joined = invitations.accept_invitation(invitation, db, principal)
    return pages.redirect(f"/projects/{joined.name}/vms")


@router.post("/invitations/{invitation}/decline", dependencies=CHANGE)
def decline(request: Request, invitation: str, db: DatabaseDep, principal: SignedIn) -> Response:
    invitations.decline_invitation(invitation, db, principal)
    return pages.redirect("/account")

"""The user's own account: their second factor (TOTP), enrolled with a QR code."""

from __future__ import annotations

from collections.abc import Callable

import segno
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from nubis.api.deps import DatabaseDep, SecretBoxDep
from nubis.api.routes import users
from nubis.api.schemas.account import TotpCodeIn, TotpEnrollment, UserOut
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
    error: NubisError | None = None,
) -> Response:
    return pages.render(
        request,
        "account.html",
        status_code=error.status if error else 200,
        principal=principal,
        user=users.read_me(db, principal),
        projects=pages.switcher(db, principal),
        enrollment=enrollment,
        qr=qr_svg(enrollment.uri) if enrollment else None,
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
    except ValidationError as invalid:
        return _page(request, db, principal, error=pages.invalid(invalid))
    except NubisError as error:
        return _page(request, db, principal, error=error)
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

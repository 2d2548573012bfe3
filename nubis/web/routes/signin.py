"""Signing in (password, then a TOTP code when the account has one) and out."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from nubis.api.deps import DatabaseDep, SecretBoxDep, SourceDep
from nubis.api.routes import auth
from nubis.api.schemas.account import LoginRequest
from nubis.errors import NubisError, SecondFactorRequired, Unauthenticated
from nubis.web import pages, session
from nubis.web.deps import form_of

router = APIRouter(include_in_schema=False)


def _form(
    request: Request,
    *,
    next_page: str,
    email: str = "",
    password: str = "",
    totp: bool = False,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    secret = session.sign_in_secret(request)
    response = pages.render(
        request,
        "signin.html",
        status_code=status_code,
        csrf=session.csrf_of(secret),
        email=email,
        password=password,
        totp=totp,
        error=error,
        next_page=next_page,
    )
    session.keep_sign_in_secret(request, response, secret)
    return response


@router.get("/login")
def sign_in_page(request: Request, next: str | None = None) -> Response:
    return _form(request, next_page=pages.own_path(next, "/"))


@router.post("/login")
async def sign_in(
    request: Request, db: DatabaseDep, box: SecretBoxDep, source: SourceDep
) -> Response:
    try:
        await session.check_csrf(request, session.SIGN_IN_COOKIE)
    except NubisError as error:
        return _form(request, next_page="/", error=error.detail, status_code=error.status)
    form = await form_of(request)
    next_page = pages.own_path(form.get("next"), "/")
    email, password = form.get("email", ""), form.get("password", "")
    try:
        body = LoginRequest(
            email=email,
            password=password,
            totp_code=form.get("totp_code") or None,
            token_name=session.TOKEN_NAME,
            expires_in=session.LIFETIME,
        )
    except ValidationError:
        return _form(
            request,
            next_page=next_page,
            email=email,
            error="enter your email and password",
            status_code=422,
        )
    try:
        granted = auth.log_in_for_token(body, db, box, source)
    except SecondFactorRequired:
        # The password was right: ask for the code, keeping what was typed.
        return _form(request, next_page=next_page, email=email, password=password, totp=True)
    except NubisError as error:
        return _form(
            request,
            next_page=next_page,
            email=email,
            totp=bool(body.totp_code),
            password=password if body.totp_code and not _wrong_password(error) else "",
            error=error.detail,
            status_code=error.status,
        )
    response = pages.redirect(next_page)
    session.start(request, response, granted.secret)
    return response


def _wrong_password(error: NubisError) -> bool:
    return isinstance(error, Unauthenticated) and "password" in error.detail


@router.post("/logout")
async def sign_out(request: Request, db: DatabaseDep) -> Response:
    """Revoke the session's token (the API's log-out), then forget the cookie."""
    await session.check_csrf(request)
    principal = session.principal_of(request, db)
    auth.log_out(db, principal)
    response = pages.redirect("/login")
    session.end(response)
    return response

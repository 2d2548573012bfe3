"""A browser's session: an API token kept in an HttpOnly cookie, and the CSRF token
that goes with it.

Signing in issues an ordinary API token (named `web-session`), so a session is
authenticated, scoped, expired and revoked exactly like a token: signing out revokes
it, and every page acts as the principal the API would see for that token. The CSRF
token is derived from the session's secret (an HMAC), so it needs no storage, and a
page of another site, which can make the browser send the cookie but cannot read it,
cannot compute it. Before sign-in, the sign-in form is protected by a random
double-submit cookie instead.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request, Response

from nubis.auth import tokens
from nubis.auth.authz import Principal
from nubis.db import Database
from nubis.errors import Forbidden, Unauthenticated

COOKIE = "nubis_session"
SIGN_IN_COOKIE = "nubis_sign_in"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
TOKEN_NAME = "web-session"
LIFETIME = "12h"
LIFETIME_SECONDS = 12 * 3600


def csrf_of(secret: str) -> str:
    """The CSRF token of the session (or sign-in form) whose cookie holds `secret`."""
    return hmac.new(secret.encode(), b"nubis csrf", hashlib.sha256).hexdigest()


def principal_of(request: Request, db: Database) -> Principal:
    """Who the session cookie belongs to; Unauthenticated without a live one."""
    secret = request.cookies.get(COOKIE)
    if not secret:
        raise Unauthenticated("sign in first")
    with db.reading() as session:
        return tokens.authenticate(session, secret)


def session_csrf(request: Request) -> str:
    return csrf_of(request.cookies.get(COOKIE, ""))


async def check_csrf(request: Request, cookie: str = COOKIE) -> None:
    """Refuse a change whose CSRF token (form field or header) does not match the
    cookie's: it did not come from a page nubis served to this browser."""
    secret = request.cookies.get(cookie)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        field = form.get(CSRF_FIELD)
        sent = field if isinstance(field, str) else None
    if not secret or not sent or not hmac.compare_digest(sent, csrf_of(secret)):
        raise Forbidden("the form is stale or did not come from this site: reload the page")


def sign_in_secret(request: Request) -> str:
    """The sign-in form's double-submit secret: the browser's, or a new one."""
    return request.cookies.get(SIGN_IN_COOKIE) or secrets.token_urlsafe(32)


def keep_sign_in_secret(request: Request, response: Response, secret: str) -> None:
    """Set the sign-in secret's cookie, if the browser does not hold it yet."""
    if request.cookies.get(SIGN_IN_COOKIE) != secret:
        response.set_cookie(
            SIGN_IN_COOKIE, secret, httponly=True, samesite="lax", secure=_secure(request)
        )


def start(request: Request, response: Response, secret: str) -> None:
    """Hand the browser the new session's token."""
    response.set_cookie(
        COOKIE,
        secret,
        max_age=LIFETIME_SECONDS,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    response.delete_cookie(SIGN_IN_COOKIE)


def end(response: Response) -> None:
    response.delete_cookie(COOKIE)


def _secure(request: Request) -> bool:
    # Behind HTTPS (directly, or through a proxy uvicorn trusts) the cookie is sent
    # over HTTPS only; `nubis up` on loopback serves plain HTTP.
    return request.url.scheme == "https"

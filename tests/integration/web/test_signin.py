"""Signing in to the console, a second factor, signing out, and the CSRF check on every
change: a session is an API token in an HttpOnly cookie, and the API's login throttle
and audit log apply to it as they do to `POST /v1/auth/token`."""

from __future__ import annotations

import re
import time

import pyotp
from fastapi import FastAPI
from sqlalchemy import select

from nubis.db import Database
from nubis.models import ApiToken, AuditEvent
from tests.integration.api.people import People
from tests.integration.web.visitor import Visitor


def _code(secret: str, offset_steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * offset_steps)


def test_a_password_signs_in_to_a_session_cookie_that_scripts_cannot_read(
    app: FastAPI, people: People
) -> None:
    alice = people.user("alice")
    visitor = Visitor(app)
    assert visitor.get("/projects").headers["location"] == "/login?next=/projects"

    answer = visitor.sign_in(alice.email)

    assert answer.status_code == 303
    assert answer.headers["location"] == "/"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if "nubis_session=" in c)
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Max-Age=43200" in cookie
    page = visitor.get("/projects")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert '<a href="/account">alice</a>' in page.text


def test_an_account_with_totp_is_asked_for_a_code_after_its_password(
    app: FastAPI, people: People
) -> None:
    alice = people.user("alice")
    visitor = Visitor(app)
    visitor.sign_in(alice.email)
    enrolment = visitor.post("/account/totp")
    assert enrolment.status_code == 200
    assert "<svg" in enrolment.text  # the QR code
    secret = re.search(r"data-totp-secret>([A-Z2-7]+)<", enrolment.text)[1]  # type: ignore[index]
    assert visitor.post("/account/totp/confirm", {"code": _code(secret)}).status_code == 303
    assert "data-totp>on<" in visitor.get("/account").text

    later = Visitor(app)
    asked = later.sign_in(alice.email)
    assert asked.status_code == 200
    assert 'name="totp_code"' in asked.text
    assert "Signing in as <strong>alice@example.test</strong>" in asked.text
    refused = later.post(
        "/login", {"email": alice.email, "password": "correct horse battery", "totp_code": "000000"}
    )
    assert refused.status_code == 401
    assert "the TOTP code is wrong or was used already" in refused.text
    answer = later.sign_in(alice.email, code=_code(secret, 1))
    assert answer.status_code == 303
    assert later.get("/projects").status_code == 200


def test_a_wrong_password_is_refused_audited_and_throttled_as_by_the_api(
    app: FastAPI, people: People, db: Database
) -> None:
    alice = people.user("alice")
    visitor = Visitor(app)
    answers = [visitor.sign_in(alice.email, password="wrong").status_code for _ in range(7)]

    # Five failures are free; the sixth blocks the account, so the seventh is refused.
    assert answers == [401] * 6 + [429]
    with db.reading() as session:
        outcomes = list(
            session.scalars(
                select(AuditEvent.outcome)
                .where(AuditEvent.action == "login")
                .order_by(AuditEvent.at)
            )
        )
    assert outcomes == ["failure"] * 6 + ["throttled"]


def test_signing_out_revokes_the_session_so_its_cookie_opens_nothing(
    app: FastAPI, people: People, db: Database
) -> None:
    alice = people.user("alice")
    visitor = Visitor(app)
    visitor.sign_in(alice.email)
    cookie = visitor.client.cookies["nubis_session"]

    out = visitor.post("/logout")

    assert out.status_code == 303
    assert out.headers["location"] == "/login"
    with db.reading() as session:
        revoked = session.scalars(
            select(ApiToken.revoked_at).where(ApiToken.name == "web-session")
        ).one()
    assert revoked is not None
    thief = Visitor(app)
    thief.client.cookies.set("nubis_session", cookie)
    assert thief.get("/projects").headers["location"] == "/login?next=/projects"
    as_token = thief.client.get("/v1/projects", headers={"Authorization": f"Bearer {cookie}"})
    assert as_token.status_code == 401


def test_a_change_without_the_page_s_csrf_token_or_with_a_forged_one_is_refused(
    app: FastAPI, people: People
) -> None:
    alice = people.user("alice")
    visitor = Visitor(app)
    visitor.sign_in(alice.email)

    missing = visitor.client.post("/projects", data={"name": "web"})
    forged = visitor.client.post("/projects", data={"name": "web", "csrf": "0" * 64})
    other_session = Visitor(app)
    other_session.sign_in(alice.email)
    borrowed = visitor.client.post("/projects", data={"name": "web", "csrf": other_session.csrf})
    by_header = visitor.client.post(
        "/projects", data={"name": "web"}, headers={"X-CSRF-Token": visitor.csrf}
    )

    assert [missing.status_code, forged.status_code, borrowed.status_code] == [403, 403, 403]
    assert "did not come from this site" in missing.text
    assert by_header.status_code == 303
    assert by_header.headers["location"] == "/projects/web/vms"


def test_the_sign_in_form_needs_its_own_csrf_cookie(app: FastAPI, people: People) -> None:
    alice = people.user("alice")
    visitor = Visitor(app)

    answer = visitor.client.post("/login", data={"email": alice.email, "password": "x" * 8})

    assert answer.status_code == 403
    assert "nubis_session" not in visitor.client.cookies


def test_after_signing_in_the_browser_goes_only_to_a_page_of_this_site(
    app: FastAPI, people: People
) -> None:
    alice = people.user("alice")
    visitor = Visitor(app)
    visitor.get("/login")
    inside = visitor.post(
        "/login",
        {"email": alice.email, "password": "correct horse battery", "next": "/account"},
    )
    visitor.post("/logout")
    visitor.get("/login")
    outside = visitor.post(
        "/login",
        {"email": alice.email, "password": "correct horse battery", "next": "//evil.example/"},
    )

    assert inside.headers["location"] == "/account"
    assert outside.headers["location"] == "/"

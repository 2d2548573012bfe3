"""Logging in: passwords, TOTP codes (never twice), throttling, the audit log; and
tokens that expire or are revoked stop working at once.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pyotp
from fastapi.testclient import TestClient
from sqlalchemy import select

from nubis.auth import tokens
from nubis.auth.throttle import ACCOUNT, SOURCE
from nubis.db import Database
from nubis.models import AuditEvent, User
from tests.integration.api.people import PASSWORD, People, Person, problem


def _log_in(client: TestClient, email: str, password: str = PASSWORD, **extra: str) -> int:
    response = client.post("/v1/auth/token", json={"email": email, "password": password, **extra})
    status: int = response.status_code
    return status


def _with_totp(person: Person) -> pyotp.TOTP:
    secret = person.post("/v1/users/me/totp").json()["secret"]
    device = pyotp.TOTP(secret)
    # A code of the previous step: the next login may then use the current one.
    previous = device.at(time.time() - 30)
    assert person.post("/v1/users/me/totp/confirm", json={"code": previous}).status_code == 200
    return device


def test_a_right_password_gets_a_token_that_works(client: TestClient, people: People) -> None:
    alice = people.user("alice")
    response = client.post("/v1/auth/token", json={"email": alice.email, "password": PASSWORD})
    assert response.status_code == 201
    token = response.json()
    assert token["secret"].startswith("nubis_")
    assert token["expires_at"] is not None
    me = client.get("/v1/users/me", headers={"Authorization": f"Bearer {token['secret']}"})
    assert me.json()["email"] == alice.email


def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(
    client: TestClient, people: People
) -> None:
    alice = people.user("alice")
    wrong = client.post("/v1/auth/token", json={"email": alice.email, "password": "not it at all"})
    unknown = client.post("/v1/auth/token", json={"email": "nobody@x.test", "password": PASSWORD})
    assert problem(wrong, 401, "unauthenticated")["detail"] == "wrong email or password"
    assert problem(unknown, 401, "unauthenticated")["detail"] == "wrong email or password"


def test_a_wrong_totp_code_is_refused(client: TestClient, people: People) -> None:
    alice = people.user("alice")
    device = _with_totp(alice)
    wrong = f"{(int(device.now()) + 1) % 1_000_000:06d}"
    assert _log_in(client, alice.email, totp_code=wrong) == 401
    assert _log_in(client, alice.email) == 401
    assert _log_in(client, alice.email, totp_code=device.now()) == 201


def test_a_totp_code_is_accepted_only_once(client: TestClient, people: People) -> None:
    alice = people.user("alice")
    device = _with_totp(alice)
    code = device.now()
    assert _log_in(client, alice.email, totp_code=code) == 201
    replay = client.post(
        "/v1/auth/token", json={"email": alice.email, "password": PASSWORD, "totp_code": code}
    )
    assert problem(replay, 401)["detail"] == "the TOTP code is wrong or was used already"


def test_the_totp_seed_is_sealed_at_rest(db: Database, people: People) -> None:
    alice = people.user("alice")
    secret = alice.post("/v1/users/me/totp").json()["secret"]
    with db.reading() as session:
        stored = session.scalars(select(User.totp_seed).where(User.id == alice.key)).one()
    assert stored is not None
    assert secret.encode() not in stored


def test_disabling_totp_needs_a_current_code(client: TestClient, people: People) -> None:
    alice = people.user("alice")
    device = _with_totp(alice)
    problem(alice.post("/v1/users/me/totp/disable", json={"code": "000000"}), 422)
    assert alice.post("/v1/users/me/totp/disable", json={"code": device.now()}).status_code == 200
    assert _log_in(client, alice.email) == 201


def test_an_expired_token_is_refused(db: Database, client: TestClient, people: People) -> None:
    alice = people.user("alice")
    with db.transaction() as session:
        _, secret = tokens.issue(session, alice.key, "short", lifetime=timedelta(seconds=1))
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/v1/users/me", headers=headers).status_code == 200
    time.sleep(1.1)
    problem(client.get("/v1/users/me", headers=headers), 401, "unauthenticated")


def test_a_revoked_token_is_refused_at_once(client: TestClient, people: People) -> None:
    alice = people.user("alice")
    created = alice.post("/v1/tokens", json={"name": "ci"}).json()
    headers = {"Authorization": f"Bearer {created['secret']}"}
    assert client.get("/v1/users/me", headers=headers).status_code == 200
    assert alice.delete(f"/v1/tokens/{created['id']}").status_code == 204
    problem(client.get("/v1/users/me", headers=headers), 401, "unauthenticated")


def test_logging_out_revokes_the_token_used(client: TestClient, people: People) -> None:
    alice = people.user("alice")
    assert client.delete("/v1/auth/token", headers=alice.auth).status_code == 204
    problem(alice.get("/v1/users/me"), 401)


def test_a_disabled_user_can_neither_log_in_nor_use_a_token(
    client: TestClient, people: People
) -> None:
    operator = people.user("root", operator=True)
    alice = people.user("alice")
    assert operator.patch("/v1/admin/users/alice", json={"disabled": True}).status_code == 200
    problem(alice.get("/v1/users/me"), 401)
    assert _log_in(client, alice.email) == 401


def test_an_account_is_blocked_after_repeated_failures(client: TestClient, people: People) -> None:
    alice = people.user("alice")
    for _ in range(ACCOUNT.free_failures + 1):
        assert _log_in(client, alice.email, "wrong password!") == 401
    blocked = client.post("/v1/auth/token", json={"email": alice.email, "password": PASSWORD})
    problem(blocked, 429, "too_many_requests")
    assert int(blocked.headers["Retry-After"]) >= 1
    bob = people.user("bob")
    assert _log_in(client, bob.email) == 201, "another account from the same source still works"


def test_a_source_is_blocked_after_many_failures_across_accounts(
    client: TestClient, people: People
) -> None:
    alice = people.user("alice")
    for n in range(SOURCE.free_failures + 1):
        assert _log_in(client, f"guess{n}@example.test", "wrong password!") == 401
    problem(client.post("/v1/auth/token", json={"email": alice.email, "password": PASSWORD}), 429)


def test_every_login_attempt_is_in_the_audit_log(
    db: Database, client: TestClient, people: People
) -> None:
    operator = people.user("root", operator=True)
    alice = people.user("alice")
    _log_in(client, alice.email, "wrong password!")
    _log_in(client, "nobody@example.test")
    _log_in(client, alice.email)
    events = operator.get("/v1/admin/audit", params={"action": "login"}).json()["items"]
    seen = [(e["email"], e["outcome"], e["detail"]) for e in events]
    assert seen == [
        (alice.email, "success", None),
        ("nobody@example.test", "failure", "no such account"),
        (alice.email, "failure", "wrong password"),
    ]
    assert all(e["source"] == "testclient" for e in events)
    with db.reading() as session:
        assert len(session.scalars(select(AuditEvent)).all()) == 3

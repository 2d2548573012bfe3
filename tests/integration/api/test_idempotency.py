"""`Idempotency-Key`: what a stored answer keeps, and who may have it again.

A stored answer may hold a secret (a new token's, a TOTP seed), so it is kept sealed,
and it is given again only to the token that made the first request, while that token
still authenticates.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select, text, update

from nubis.auth import tokens
from nubis.clock import now
from nubis.db import Database
from nubis.ids import Kind, parse_id
from nubis.models import ApiToken, IdempotentRequest, Role
from tests.integration.api.people import People, Person, problem

KEY = {"Idempotency-Key": "mint-ci-1"}


def _raw_rows(db: Database) -> list[bytes]:
    """Every stored answer's row, each column as the store returns it, in bytes."""
    with db.reading() as session:
        rows = session.execute(text("SELECT * FROM idempotent_request")).all()
    return [b"\0".join(v if isinstance(v, bytes) else str(v).encode() for v in row) for row in rows]


def _stored(db: Database) -> int:
    with db.reading() as session:
        return session.scalar(select(func.count()).select_from(IdempotentRequest)) or 0


def _mint(person: Person, auth: dict[str, str], **headers: str) -> Any:
    return person.client.post("/v1/tokens", json={"name": "ci"}, headers={**auth, **headers})


def _second_token(db: Database, person: Person, project: str | None = None) -> dict[str, str]:
    scope = parse_id(Kind.PROJECT, project) if project else None
    with db.transaction() as session:
        _, secret = tokens.issue(session, person.key, "second", project_id=scope)
    return {"Authorization": f"Bearer {secret}"}


def test_a_stored_answer_holds_no_secret_in_the_clear(people: People, db: Database) -> None:
    alice = people.user("alice")
    minted = alice.post("/v1/tokens", json={"name": "ci"}, headers=KEY)
    enrolled = alice.post("/v1/users/me/totp", headers={"Idempotency-Key": "enrol-1"})
    assert (minted.status_code, enrolled.status_code) == (201, 201)
    secrets = [minted.json()["secret"], enrolled.json()["secret"], enrolled.json()["uri"]]

    rows = _raw_rows(db)

    assert len(rows) == 2
    assert [s for s in secrets for row in rows if s.encode() in row] == []


def test_the_same_token_gets_the_replay_with_the_same_secret(people: People) -> None:
    alice = people.user("alice")
    first = _mint(alice, alice.auth, **KEY)
    again = _mint(alice, alice.auth, **KEY)

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    minted = {"Authorization": f"Bearer {again.json()['secret']}"}
    assert alice.client.get("/v1/users/me", headers=minted).json()["name"] == "alice"
    assert sorted(t["name"] for t in alice.get("/v1/tokens").json()["items"]) == ["ci", "test"]


def test_the_same_token_gets_the_replay_however_its_scheme_is_spelt(people: People) -> None:
    alice = people.user("alice")
    first = _mint(alice, alice.auth, **KEY)
    again = _mint(alice, {"Authorization": f"bearer {alice.token}"}, **KEY)

    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["secret"] == first.json()["secret"]
    assert sorted(t["name"] for t in alice.get("/v1/tokens").json()["items"]) == ["ci", "test"]


def test_a_totp_enrolment_is_replayed_with_the_same_seed(people: People) -> None:
    alice = people.user("alice")
    key = {"Idempotency-Key": "enrol-1"}
    first = alice.post("/v1/users/me/totp", headers=key)
    again = alice.post("/v1/users/me/totp", headers=key)

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["secret"] == first.json()["secret"]


def test_a_revoked_token_gets_401_not_the_replay(people: People) -> None:
    alice = people.user("alice")
    assert _mint(alice, alice.auth, **KEY).status_code == 201
    assert alice.delete("/v1/auth/token").status_code == 204

    refused = problem(_mint(alice, alice.auth, **KEY), 401, "unauthenticated")

    assert "secret" not in refused
    assert refused["detail"] == "the token is not valid: unknown, expired or revoked"


def test_an_expired_token_gets_401_not_the_replay(people: People, db: Database) -> None:
    alice = people.user("alice")
    assert _mint(alice, alice.auth, **KEY).status_code == 201
    with db.transaction() as session:
        session.execute(
            update(ApiToken)
            .where(ApiToken.user_id == alice.key)
            .values(expires_at=now() - timedelta(seconds=1))
        )

    problem(_mint(alice, alice.auth, **KEY), 401, "unauthenticated")


def test_another_token_of_the_same_user_gets_its_own_answer(people: People, db: Database) -> None:
    alice = people.user("alice")
    web = people.project("web", {alice: Role.OWNER})
    first = _mint(alice, alice.auth, **KEY)
    other = _mint(alice, _second_token(db, alice), **KEY)
    scoped = _mint(alice, _second_token(db, alice, web), **KEY)

    assert (first.status_code, other.status_code) == (201, 201)
    assert "idempotent-replayed" not in other.headers
    assert other.json()["secret"] != first.json()["secret"]
    assert problem(scoped, 403, "forbidden")["detail"] == (
        "this token is scoped to one project; it cannot do this"
    )
    assert "idempotent-replayed" not in scoped.headers


def test_credentials_that_do_not_authenticate_go_on_to_the_app_and_keep_nothing(
    client: TestClient, people: People, db: Database
) -> None:
    people.user("alice")
    for authorization in ("Bearer nubis_unknown", "Basic YWxpY2U6cHc=", "Bearer"):
        headers = {"Authorization": authorization, **KEY}
        for _ in range(2):
            answer = client.post("/v1/projects", json={"name": "web"}, headers=headers)
            problem(answer, 401, "unauthenticated")
            assert "idempotent-replayed" not in answer.headers
    assert _stored(db) == 0

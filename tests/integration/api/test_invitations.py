"""Joining a project by invitation: an admin invites an email address, the user with that
address accepts or declines, and nobody learns anything about accounts on the way."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from nubis.clock import now
from nubis.db import Database
from nubis.models import Invitation, Membership, Role
from tests.integration.api.people import People, Person, problem

FIELDS = {
    "id",
    "project",
    "project_name",
    "email",
    "role",
    "invited_by",
    "created_at",
    "expires_at",
}


def _invite(admin: Person, email: str, role: str = "member", project: str = "web") -> Any:
    return admin.post(f"/v1/projects/{project}/invitations", json={"email": email, "role": role})


def _invited(person: Person) -> list[dict[str, Any]]:
    answer = person.get("/v1/invitations")
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def _memberships(db: Database) -> int:
    with db.reading() as session:
        return session.scalar(select(func.count()).select_from(Membership)) or 0


def test_an_invitation_answers_the_same_whether_or_not_an_account_has_the_email(
    people: People,
) -> None:
    alice, bob = people.user("alice"), people.user("bob")
    web = people.project("web", {alice: Role.ADMIN})

    known = _invite(alice, bob.email)
    unknown = _invite(alice, "nobody@example.test")

    assert (known.status_code, unknown.status_code) == (201, 201)
    assert set(known.json()) == set(unknown.json()) == FIELDS
    same = {"project": web, "project_name": "web", "role": "member", "invited_by": "alice"}
    assert {k: known.json()[k] for k in same} == {k: unknown.json()[k] for k in same} == same
    assert (known.json()["email"], unknown.json()["email"]) == (bob.email, "nobody@example.test")
    created = datetime.fromisoformat(known.json()["created_at"])
    assert datetime.fromisoformat(known.json()["expires_at"]) - created == timedelta(days=7)


def test_the_invited_user_sees_accepts_and_joins_with_the_invited_role(
    people: People,
) -> None:
    alice, bob = people.user("alice"), people.user("bob")
    people.project("web", {alice: Role.OWNER})
    problem(bob.get("/v1/projects/web"), 404)
    made = _invite(alice, "Bob@Example.TEST", "viewer").json()

    (seen,) = _invited(bob)
    accepted = bob.post(f"/v1/invitations/{made['id']}/accept")

    assert seen == made
    assert (seen["email"], seen["role"], seen["project_name"]) == (bob.email, "viewer", "web")
    assert accepted.status_code == 200, accepted.text
    assert (accepted.json()["name"], accepted.json()["role"]) == ("web", "viewer")
    assert bob.get("/v1/projects/web").json()["role"] == "viewer"
    members = alice.get("/v1/projects/web/members").json()["items"]
    assert {m["name"]: m["role"] for m in members} == {"alice": "owner", "bob": "viewer"}
    assert _invited(bob) == []
    assert alice.get("/v1/projects/web/invitations").json()["items"] == []
    problem(bob.post(f"/v1/invitations/{made['id']}/accept"), 404, "not_found")


def test_a_declined_invitation_is_gone_and_makes_no_member(people: People, db: Database) -> None:
    alice, bob = people.user("alice"), people.user("bob")
    people.project("web", {alice: Role.OWNER})
    made = _invite(alice, bob.email).json()

    declined = bob.post(f"/v1/invitations/{made['id']}/decline")

    assert declined.status_code == 204, declined.text
    assert _invited(bob) == []
    problem(bob.post(f"/v1/invitations/{made['id']}/accept"), 404, "not_found")
    problem(bob.get("/v1/projects/web"), 404)
    assert _memberships(db) == 1


def test_only_the_user_with_the_invited_email_sees_or_answers_the_invitation(
    people: People, db: Database
) -> None:
    alice, bob, carol = people.user("alice"), people.user("bob"), people.user("carol")
    people.project("web", {alice: Role.OWNER})
    made = _invite(alice, bob.email).json()

    assert _invited(carol) == []
    assert _invited(alice) == []
    for action in ("accept", "decline"):
        refused = problem(carol.post(f"/v1/invitations/{made['id']}/{action}"), 404, "not_found")
        assert refused["detail"] == f"no invitation {made['id']!r} for you"
    assert _memberships(db) == 1
    assert [i["id"] for i in _invited(bob)] == [made["id"]]


def test_an_expired_invitation_is_not_listed_nor_accepted_and_may_be_made_again(
    people: People, db: Database
) -> None:
    alice, bob = people.user("alice"), people.user("bob")
    people.project("web", {alice: Role.OWNER})
    made = _invite(alice, bob.email).json()
    with db.transaction() as session:
        session.execute(update(Invitation).values(expires_at=now() - timedelta(seconds=1)))

    assert _invited(bob) == []
    assert alice.get("/v1/projects/web/invitations").json()["items"] == []
    problem(bob.post(f"/v1/invitations/{made['id']}/accept"), 404, "not_found")
    problem(alice.delete(f"/v1/projects/web/invitations/{made['id']}"), 404, "not_found")
    again = _invite(alice, bob.email)
    assert again.status_code == 201, again.text
    assert [i["id"] for i in _invited(bob)] == [again.json()["id"]]


def test_only_an_owner_invites_an_owner(people: People) -> None:
    alice, bob, carol = people.user("alice"), people.user("bob"), people.user("carol")
    people.project("web", {alice: Role.OWNER, bob: Role.ADMIN})

    refused = problem(_invite(bob, carol.email, "owner"), 403, "forbidden")
    made = _invite(alice, carol.email, "owner").json()
    accepted = carol.post(f"/v1/invitations/{made['id']}/accept")

    assert refused["detail"] == "only an owner may invite an owner"
    assert accepted.json()["role"] == "owner"


def test_an_invitation_to_be_owner_lapses_when_its_inviter_is_no_longer_owner(
    people: People,
) -> None:
    alice, dave, carol = people.user("alice"), people.user("dave"), people.user("carol")
    people.project("web", {alice: Role.OWNER, dave: Role.OWNER})
    made = _invite(alice, carol.email, "owner").json()
    assert dave.patch("/v1/projects/web/members/alice", json={"role": "admin"}).status_code == 200

    refused = problem(carol.post(f"/v1/invitations/{made['id']}/accept"), 409, "conflict")

    assert refused["detail"] == "this invitation to be owner was made by someone no longer an owner"
    problem(carol.get("/v1/projects/web"), 404)


def test_admins_list_and_revoke_pending_invitations(people: People) -> None:
    alice, bob = people.user("alice"), people.user("bob")
    people.project("web", {alice: Role.ADMIN})
    made = _invite(alice, bob.email, "viewer").json()

    listed = alice.get("/v1/projects/web/invitations").json()["items"]
    revoked = alice.delete(f"/v1/projects/web/invitations/{made['id']}")

    assert listed == [made]
    assert revoked.status_code == 204, revoked.text
    assert alice.get("/v1/projects/web/invitations").json()["items"] == []
    assert _invited(bob) == []
    problem(bob.post(f"/v1/invitations/{made['id']}/accept"), 404, "not_found")
    again = problem(alice.delete(f"/v1/projects/web/invitations/{made['id']}"), 404, "not_found")
    assert again["detail"] == f"no pending invitation {made['id']!r}"


def test_inviting_a_member_or_an_address_invited_already_is_a_conflict(people: People) -> None:
    alice, bob = people.user("alice"), people.user("bob")
    people.project("web", {alice: Role.OWNER, bob: Role.VIEWER})

    member = problem(_invite(alice, bob.email.upper()), 409, "conflict")
    assert _invite(alice, "carol@example.test").status_code == 201
    pending = problem(_invite(alice, "carol@example.test", "admin"), 409, "conflict")

    assert member["detail"] == "a member of web has the email bob@example.test already"
    assert pending["detail"] == (
        "carol@example.test has a pending invitation to web; revoke it first"
    )


def test_an_invitation_to_something_that_is_not_an_email_is_refused_naming_the_field(
    people: People, db: Database
) -> None:
    alice = people.user("alice")
    people.project("web", {alice: Role.OWNER})

    for bad in ("bob", "", "a@b@c", "x" * 250 + "@example.test"):
        refused = problem(_invite(alice, bad), 422, "invalid_input")
        assert list(refused["errors"]) == ["email"], bad
    assert "role" in problem(_invite(alice, "bob@example.test", "boss"), 422)["errors"]
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(Invitation)) == 0

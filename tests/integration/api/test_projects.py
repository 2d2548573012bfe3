"""Projects, their members and SSH keys: who may change what, and what stays consistent."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from nubis.models import Role
from tests.integration.api.people import People, problem


def _ed25519(comment: str = "") -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{line.decode()} {comment}".strip()


def test_the_creator_of_a_project_is_its_owner(people: People) -> None:
    alice = people.user("alice")
    created = alice.post("/v1/projects", json={"name": "web"}).json()
    assert created["role"] == "owner"
    members = alice.get("/v1/projects/web/members").json()["items"]
    assert [(m["name"], m["role"]) for m in members] == [("alice", "owner")]
    assert alice.get(f"/v1/projects/{created['id']}").json()["name"] == "web"


def test_a_taken_project_name_is_a_conflict(people: People) -> None:
    alice, bob = people.user("alice"), people.user("bob")
    assert alice.post("/v1/projects", json={"name": "web"}).status_code == 201
    problem(bob.post("/v1/projects", json={"name": "web"}), 409)


def test_an_admin_may_not_make_an_owner(people: People) -> None:
    alice, bob, carol = people.user("alice"), people.user("bob"), people.user("carol")
    people.project("web", {alice: Role.OWNER, bob: Role.ADMIN, carol: Role.VIEWER})
    problem(bob.patch("/v1/projects/web/members/carol", json={"role": "owner"}), 403)
    changed = bob.patch("/v1/projects/web/members/carol", json={"role": "member"})
    assert changed.json()["role"] == "member"
    problem(bob.patch("/v1/projects/web/members/alice", json={"role": "viewer"}), 403)
    problem(bob.delete("/v1/projects/web/members/alice"), 403)


def test_the_last_owner_cannot_leave_or_step_down(people: People) -> None:
    alice, bob = people.user("alice"), people.user("bob")
    people.project("web", {alice: Role.OWNER, bob: Role.MEMBER})
    problem(alice.delete("/v1/projects/web/members/alice"), 409)
    problem(alice.patch("/v1/projects/web/members/alice", json={"role": "admin"}), 409)
    assert alice.patch("/v1/projects/web/members/bob", json={"role": "owner"}).status_code == 200
    assert alice.delete("/v1/projects/web/members/alice").status_code == 204
    assert [m["name"] for m in bob.get("/v1/projects/web/members").json()["items"]] == ["bob"]


def test_changing_or_removing_someone_outside_the_project_says_nothing_about_them(
    people: People,
) -> None:
    alice, bob, carol = people.user("alice"), people.user("bob"), people.user("carol")
    people.project("web", {alice: Role.OWNER, carol: Role.VIEWER})
    people.project("db", {bob: Role.OWNER})
    refs = [bob.name, bob.email, bob.id, "nobody", "nobody@example.test", "usr-" + "0" * 26]

    for ref in refs:
        changed = problem(
            alice.patch(f"/v1/projects/web/members/{ref}", json={"role": "admin"}), 404
        )
        removed = problem(alice.delete(f"/v1/projects/web/members/{ref}"), 404)
        assert changed["detail"] == removed["detail"] == f"web has no member {ref!r}"
    assert (
        alice.patch(f"/v1/projects/web/members/{carol.email}", json={"role": "admin"}).json()[
            "role"
        ]
        == "admin"
    )
    assert bob.get("/v1/projects/db").json()["role"] == "owner"


def test_deleting_a_project_takes_its_keys_members_and_scoped_tokens(people: People) -> None:
    alice, bob = people.user("alice"), people.user("bob")
    people.project("web", {alice: Role.OWNER, bob: Role.MEMBER})
    assert (
        bob.post(
            "/v1/projects/web/ssh-keys", json={"name": "k", "public_key": _ed25519()}
        ).status_code
        == 201
    )
    scoped = bob.post("/v1/tokens", json={"name": "ci", "project": "web"}).json()
    assert alice.delete("/v1/projects/web").status_code == 204
    problem(alice.get("/v1/projects/web"), 404)
    assert bob.get("/v1/tokens").json()["items"] == [
        t for t in bob.get("/v1/tokens").json()["items"] if t["id"] != scoped["id"]
    ]
    problem(
        bob.client.get("/v1/users/me", headers={"Authorization": f"Bearer {scoped['secret']}"}), 401
    )
    assert alice.post("/v1/projects", json={"name": "web"}).status_code == 201


def test_a_scoped_token_sees_only_its_project(people: People) -> None:
    alice = people.user("alice")
    people.project("web", {alice: Role.OWNER})
    people.project("db", {alice: Role.OWNER})
    secret = alice.post("/v1/tokens", json={"name": "ci", "project": "web"}).json()["secret"]
    scoped = {"Authorization": f"Bearer {secret}"}
    listed = alice.client.get("/v1/projects", headers=scoped).json()["items"]
    assert [p["name"] for p in listed] == ["web"]
    problem(alice.client.get("/v1/projects/db", headers=scoped), 404)
    problem(alice.client.post("/v1/projects", json={"name": "x"}, headers=scoped), 403)
    problem(alice.client.post("/v1/tokens", json={"name": "y"}, headers=scoped), 403)


def test_an_ssh_key_is_stored_with_its_fingerprint(people: People) -> None:
    alice = people.user("alice")
    people.project("web", {alice: Role.MEMBER})
    line = _ed25519("alice@laptop")
    added = alice.post("/v1/projects/web/ssh-keys", json={"name": "laptop", "public_key": line})
    assert added.status_code == 201
    assert added.json()["public_key"] == line
    assert added.json()["fingerprint"].startswith("SHA256:")
    assert alice.get("/v1/projects/web/ssh-keys/laptop").json() == added.json()
    assert alice.delete("/v1/projects/web/ssh-keys/laptop").status_code == 204
    problem(alice.get("/v1/projects/web/ssh-keys/laptop"), 404)


def test_a_malformed_ssh_key_is_refused_with_a_reason(people: People) -> None:
    alice = people.user("alice")
    people.project("web", {alice: Role.MEMBER})
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    weak_line = weak.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    cases = {
        "ssh-ed25519 AAAA": "malformed",
        "ssh-ed25519 %%%%": "base64",
        "ssh-dss AAAAB3NzaC1kc3M=": "not one of",
        "-----BEGIN OPENSSH PRIVATE KEY-----": "type",
        weak_line: "2048 bits",
        f"{_ed25519()}\n{_ed25519()}": "exactly one key",
    }
    for text, reason in cases.items():
        refused = problem(
            alice.post("/v1/projects/web/ssh-keys", json={"name": "k", "public_key": text}), 422
        )
        assert reason in refused["errors"]["public_key"], (text, refused)
    assert alice.get("/v1/projects/web/ssh-keys").json()["items"] == []


def test_the_same_key_twice_in_a_project_is_a_conflict(people: People) -> None:
    alice = people.user("alice")
    people.project("web", {alice: Role.MEMBER})
    line = _ed25519()
    assert (
        alice.post("/v1/projects/web/ssh-keys", json={"name": "a", "public_key": line}).status_code
        == 201
    )
    problem(alice.post("/v1/projects/web/ssh-keys", json={"name": "b", "public_key": line}), 409)

"""The first steps of a new cloud, through the API: log in, turn on TOTP, make a
project, add an SSH key, invite a second user as a viewer who can read but not change.
"""

from __future__ import annotations

import time

import pyotp
from fastapi.testclient import TestClient

from tests.integration.api.people import PASSWORD, People, problem

PUBLIC_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILzBjTientSi8txdCYx9B4IlJASwI75+3nsZG3wAFPvp alice@laptop"
)


def _code(secret: str, offset_steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * offset_steps)


def test_a_new_operator_sets_up_a_project_and_a_read_only_colleague(
    client: TestClient, people: People
) -> None:
    operator = people.user("alice", operator=True)

    login = client.post("/v1/auth/token", json={"email": operator.email, "password": PASSWORD})
    assert login.status_code == 201, login.text
    operator.token = login.json()["secret"]
    assert operator.get("/v1/users/me").json()["name"] == "alice"

    enrollment = operator.post("/v1/users/me/totp")
    assert enrollment.status_code == 201
    secret = enrollment.json()["secret"]
    assert enrollment.json()["uri"].startswith("otpauth://totp/")
    confirmed = operator.post("/v1/users/me/totp/confirm", json={"code": _code(secret)})
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["totp_enabled"] is True

    without_code = client.post(
        "/v1/auth/token", json={"email": operator.email, "password": PASSWORD}
    )
    problem(without_code, 401, "totp_required")
    with_code = client.post(
        "/v1/auth/token",
        json={"email": operator.email, "password": PASSWORD, "totp_code": _code(secret, 1)},
    )
    assert with_code.status_code == 201, with_code.text

    project = operator.post("/v1/projects", json={"name": "web"})
    assert project.status_code == 201
    assert project.json()["role"] == "owner"
    key = operator.post(
        "/v1/projects/web/ssh-keys", json={"name": "laptop", "public_key": PUBLIC_KEY}
    )
    assert key.status_code == 201, key.text
    assert key.json()["fingerprint"].startswith("SHA256:")

    bob = operator.post(
        "/v1/admin/users",
        json={"name": "bob", "email": "bob@example.test", "password": "bob's long password"},
    )
    assert bob.status_code == 201, bob.text
    invited = operator.post(
        "/v1/projects/web/invitations", json={"email": "bob@example.test", "role": "viewer"}
    )
    assert invited.status_code == 201, invited.text

    bob_login = client.post(
        "/v1/auth/token", json={"email": "bob@example.test", "password": "bob's long password"}
    )
    viewer = {"Authorization": f"Bearer {bob_login.json()['secret']}"}
    (invitation,) = client.get("/v1/invitations", headers=viewer).json()["items"]
    assert (invitation["project_name"], invitation["invited_by"]) == ("web", "alice")
    accepted = client.post(f"/v1/invitations/{invitation['id']}/accept", headers=viewer)
    assert accepted.status_code == 200, accepted.text
    assert client.get("/v1/projects/web", headers=viewer).json()["role"] == "viewer"
    keys = client.get("/v1/projects/web/ssh-keys", headers=viewer).json()["items"]
    assert [k["name"] for k in keys] == ["laptop"]
    members = client.get("/v1/projects/web/members", headers=viewer).json()["items"]
    assert {m["name"]: m["role"] for m in members} == {"alice": "owner", "bob": "viewer"}

    problem(
        client.post(
            "/v1/projects/web/ssh-keys",
            json={"name": "mine", "public_key": PUBLIC_KEY.replace("alice", "bob")},
            headers=viewer,
        ),
        403,
        "forbidden",
    )
    problem(client.delete("/v1/projects/web/ssh-keys/laptop", headers=viewer), 403)
    problem(
        client.post(
            "/v1/projects/web/invitations",
            json={"email": "carol@example.test", "role": "viewer"},
            headers=viewer,
        ),
        403,
    )
    problem(
        client.patch("/v1/projects/web/members/bob", json={"role": "owner"}, headers=viewer), 403
    )
    problem(client.delete("/v1/projects/web", headers=viewer), 403)
    assert len(client.get("/v1/projects/web/ssh-keys", headers=viewer).json()["items"]) == 1

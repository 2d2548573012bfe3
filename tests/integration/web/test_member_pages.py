"""Members, invitations and API tokens in the console: an admin invites, the invited
user accepts on their account page, the admin changes their role and removes them;
a token's secret is shown once and the token works with the API."""

from __future__ import annotations

import re

from fastapi import FastAPI

from nubis.roles import Role
from tests.integration.api.people import People, Person
from tests.integration.web.conftest import signed_in


def test_an_admin_invites_a_user_who_accepts_and_whose_role_the_admin_changes_then_removes(
    app: FastAPI, people: People, alice: Person, project: str
) -> None:
    owner = people.user("olga")
    people.project("team", {owner: Role.OWNER, alice: Role.VIEWER})
    dave = people.user("dave")
    admin, invited, viewer = signed_in(app, owner), signed_in(app, dave), signed_in(app, alice)

    assert "Invite" not in viewer.get("/projects/team/members").text
    admin.get("/projects/team/members")
    bad = admin.post(
        "/projects/team/members/invitations", {"email": "not-an-email", "role": "member"}
    )
    sent = admin.post("/projects/team/members/invitations", {"email": dave.email, "role": "member"})
    assert bad.status_code == 422
    assert sent.headers["location"] == "/projects/team/members"
    assert f'data-invitation="{dave.email}"' in admin.get("/projects/team/members").text

    account = invited.get("/account")
    invitation = re.search(r"/account/invitations/(inv-[0-9a-z]+)/accept", account.text)
    assert invitation is not None
    joined = invited.post(f"/account/invitations/{invitation[1]}/accept")
    assert joined.headers["location"] == "/projects/team/vms"

    admin.get("/projects/team/members")
    changed = admin.post("/projects/team/members/dave/role", {"role": "admin"})
    assert changed.headers["location"] == "/projects/team/members"
    roles = {m["name"]: m["role"] for m in owner.get("/v1/projects/team/members").json()["items"]}
    assert roles == {"olga": "owner", "alice": "viewer", "dave": "admin"}
    by_viewer = viewer.post("/projects/team/members/dave/delete")
    assert by_viewer.status_code == 403
    last_owner = admin.post("/projects/team/members/olga/delete")
    assert last_owner.status_code == 409
    assert admin.post("/projects/team/members/dave/delete").status_code == 303
    assert "dave" not in {m["name"] for m in owner.get("/v1/projects/team/members").json()["items"]}


def test_a_new_token_s_secret_is_shown_once_and_works_with_the_api_until_revoked(
    app: FastAPI, alice: Person, project: str
) -> None:
    visitor = signed_in(app, alice)
    visitor.get("/account")

    made = visitor.post("/account/tokens", {"name": "ci", "project": "web", "expires_in": "7d"})
    bad = visitor.post("/account/tokens", {"name": "ci2", "expires_in": "forever"})

    assert made.status_code == 200
    secret = re.search(r"data-token-secret>(nubis_[^<]+)<", made.text)
    assert secret is not None
    answer = visitor.client.get(
        "/v1/projects/web/vms", headers={"Authorization": f"Bearer {secret[1]}"}
    )
    assert answer.status_code == 200
    assert bad.status_code == 422
    assert "forever" in bad.text
    again = visitor.get("/account")
    assert secret[1] not in again.text
    ci = re.search(r'<tr data-token="ci">.*?/account/tokens/([^/]+)/delete', again.text, re.S)
    assert ci is not None
    assert visitor.post(f"/account/tokens/{ci[1]}/delete").status_code == 303
    revoked = visitor.client.get(
        "/v1/projects/web/vms", headers={"Authorization": f"Bearer {secret[1]}"}
    )
    assert revoked.status_code == 401

"""What every request gets: bad input is a 4xx problem naming the field, big bodies are
refused, a POST retried with its Idempotency-Key makes nothing twice, lists page with a
cursor.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi.testclient import TestClient

from nubis.api.limits import MAX_BODY_BYTES
from nubis.models import Role
from tests.integration.api.people import PASSWORD, People, problem


def test_an_unknown_field_is_refused_with_its_name(people: People) -> None:
    alice = people.user("alice")
    refused = problem(alice.post("/v1/projects", json={"name": "web", "colour": "red"}), 422)
    assert refused["code"] == "invalid_input"
    assert "colour" in refused["errors"]


def test_a_value_of_the_wrong_type_is_refused_not_converted(people: People) -> None:
    alice = people.user("alice")
    refused = problem(alice.post("/v1/projects", json={"name": 42}), 422)
    assert "name" in refused["errors"]
    operator = people.user("root", operator=True)
    body = {"name": "bob", "email": "bob@x.test", "password": "long enough pw", "operator": "yes"}
    assert "operator" in problem(operator.post("/v1/admin/users", json=body), 422)["errors"]


def test_a_bad_name_is_refused_with_the_rule(people: People) -> None:
    alice = people.user("alice")
    for bad in ["Web", "1web", "-web", "", "a" * 33, "web.site", "prj-0123456789abcdefghjkmnpqrs"]:
        refused = problem(alice.post("/v1/projects", json={"name": bad}), 422)
        assert "name" in refused["errors"], bad
    assert alice.post("/v1/projects", json={"name": "_web-1"}).status_code == 201


def test_a_duration_without_a_known_unit_is_refused(people: People) -> None:
    alice = people.user("alice")
    for bad in ["30", "30x", "-1d", "1.5d", "0s"]:
        refused = problem(alice.post("/v1/tokens", json={"name": "ci", "expires_in": bad}), 422)
        assert "expires_in" in refused["errors"], bad
    too_long = problem(alice.post("/v1/tokens", json={"name": "ci", "expires_in": "400d"}), 422)
    assert too_long["errors"] == {"expires_in": "at most 366d"}


def test_a_duration_beyond_a_century_is_refused_not_a_server_error(
    client: TestClient, people: People
) -> None:
    alice = people.user("alice")
    reason = {"expires_in": "'999999999w' is too long: a duration is at most 36500d"}
    minted = alice.post("/v1/tokens", json={"name": "ci", "expires_in": "999999999w"})
    login = {"email": alice.email, "password": PASSWORD, "expires_in": "999999999w"}

    assert problem(minted, 422, "invalid_input")["errors"] == reason
    assert problem(client.post("/v1/auth/token", json=login), 422, "invalid_input")["errors"] == (
        reason
    )
    assert [t["name"] for t in alice.get("/v1/tokens").json()["items"]] == ["test"]


def test_a_body_that_is_not_json_is_a_bad_request(client: TestClient, people: People) -> None:
    alice = people.user("alice")
    response = client.post(
        "/v1/projects",
        content=b"{not json",
        headers={**alice.auth, "content-type": "application/json"},
    )
    problem(response, 400, "malformed_request")


def test_an_oversized_body_is_refused_before_it_is_used(client: TestClient, people: People) -> None:
    alice = people.user("alice")
    body = b'{"name": "' + b"a" * MAX_BODY_BYTES + b'"}'
    response = client.post(
        "/v1/projects", content=body, headers={**alice.auth, "content-type": "application/json"}
    )
    problem(response, 413, "payload_too_large")
    assert alice.get("/v1/projects").json()["items"] == []


def test_an_oversized_body_without_a_length_is_refused_too(
    client: TestClient, people: People
) -> None:
    alice = people.user("alice")

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(MAX_BODY_BYTES // 65536 + 1):
            yield b"a" * 65536
        yield b'"}'

    for extra in ({}, {"Idempotency-Key": "big"}):
        response = client.post(
            "/v1/projects",
            content=chunks(),
            headers={**alice.auth, "content-type": "application/json", **extra},
        )
        problem(response, 413, "payload_too_large")


def test_a_retried_post_with_its_key_gets_the_first_answer(people: People) -> None:
    alice = people.user("alice")
    key = {"Idempotency-Key": "create-web-1"}
    first = alice.post("/v1/projects", json={"name": "web"}, headers=key)
    again = alice.post("/v1/projects", json={"name": "web"}, headers=key)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert len(alice.get("/v1/projects").json()["items"]) == 1


def test_a_key_reused_for_another_request_is_a_conflict(people: People) -> None:
    alice = people.user("alice")
    key = {"Idempotency-Key": "k1"}
    assert alice.post("/v1/projects", json={"name": "web"}, headers=key).status_code == 201
    problem(alice.post("/v1/projects", json={"name": "db"}, headers=key), 409, "conflict")
    assert [p["name"] for p in alice.get("/v1/projects").json()["items"]] == ["web"]


def test_keys_belong_to_their_caller(people: People) -> None:
    alice, bob = people.user("alice"), people.user("bob")
    key = {"Idempotency-Key": "same"}
    assert alice.post("/v1/projects", json={"name": "web"}, headers=key).status_code == 201
    problem(bob.post("/v1/projects", json={"name": "web"}, headers=key), 409)
    assert bob.get("/v1/projects").json()["items"] == []


def test_a_refused_request_is_replayed_as_refused(people: People) -> None:
    alice = people.user("alice")
    key = {"Idempotency-Key": "bad"}
    first = alice.post("/v1/projects", json={"name": "Bad"}, headers=key)
    again = alice.post("/v1/projects", json={"name": "Bad"}, headers=key)
    assert first.status_code == again.status_code == 422
    assert first.json() == again.json()


def test_a_list_pages_through_every_item_once(people: People) -> None:
    alice = people.user("alice")
    names = [f"p{n:02d}" for n in range(7)]
    for name in names:
        people.project(name, {alice: Role.VIEWER})
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = alice.get("/v1/projects", params=params).json()
        seen += [p["name"] for p in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == names
    assert pages == 3


def test_a_cursor_not_given_out_is_refused(people: People) -> None:
    alice = people.user("alice")
    refused = problem(alice.get("/v1/projects", params={"cursor": "!!nope"}), 422)
    assert "cursor" in refused["errors"]


def test_an_encoded_slash_in_a_path_is_not_found(people: People) -> None:
    alice = people.user("alice")
    people.project("web", {alice: Role.OWNER})
    problem(alice.get("/v1/projects/web%2Fmembers"), 404, "not_found")
    assert alice.get("/v1/projects/web/members").status_code == 200


def test_an_unknown_query_parameter_is_refused_with_its_name(people: People) -> None:
    alice = people.user("alice")
    refused = problem(alice.get("/v1/projects", params={"limt": 5}), 422)
    assert refused["errors"] == {"limt": "not a parameter of this route"}
    assert alice.get("/v1/projects", params={"limit": 5}).status_code == 200

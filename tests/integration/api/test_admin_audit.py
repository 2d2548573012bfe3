"""What operators change through `/v1/admin` is in the audit log: who, what, to what, and
how it ended; a refused change too, with the reason, and nothing of it done."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from nubis.db import Database
from nubis.models import AllocationState, Host, Location
from tests.integration.api.host_agent import Agent
from tests.integration.api.people import People, Person, problem


def _events(operator: Person, **params: str) -> list[dict[str, Any]]:
    answer = operator.get("/v1/admin/audit", params=params)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def _seen(event: dict[str, Any]) -> tuple[Any, ...]:
    return (
        event["action"],
        event["outcome"],
        event["user"],
        event["email"],
        event["source"],
        event["target"],
        event["detail"],
    )


def test_a_drained_host_leaves_an_event_with_the_operator_the_host_and_what_changed(
    people: People, agent: Agent
) -> None:
    olga = people.user("olga", operator=True)
    host = olga.get("/v1/admin/hosts/h1").json()["id"]

    assert olga.post("/v1/admin/hosts/h1/drain").json()["changed"] is True

    (event,) = _events(olga, action="admin.host.drain")
    assert _seen(event) == (
        "admin.host.drain",
        "success",
        olga.id,
        "olga@example.test",
        "testclient",
        host,
        "h1: accepting -> draining",
    )
    assert _events(olga, target=host) == [event]


def test_a_refused_change_leaves_a_failure_event_with_the_reason_and_changes_nothing(
    people: People, agent: Agent, db: Database
) -> None:
    olga = people.user("olga", operator=True)

    gone = problem(olga.post("/v1/admin/hosts/mars/drain"), 404, "not_found")
    taken = problem(
        olga.post("/v1/admin/locations", json={"name": "fra1", "prefix": "2001:db8:9::/48"}),
        409,
        "conflict",
    )

    taken_event, gone_event = _events(olga)
    assert _seen(gone_event) == (
        "admin.host.drain",
        "failure",
        olga.id,
        "olga@example.test",
        "testclient",
        "mars",
        "no host 'mars'",
    )
    assert gone["detail"] == "no host 'mars'"
    assert _seen(taken_event)[1:] == (
        "failure",
        olga.id,
        "olga@example.test",
        "testclient",
        "fra1",
        "a location named 'fra1' exists already",
    )
    assert taken["detail"] == "a location named 'fra1' exists already"
    with db.reading() as session:
        assert list(session.scalars(select(Host.allocation_state))) == [AllocationState.ACCEPTING]
        assert list(session.scalars(select(Location.prefix))) == ["2001:db8:1::/48"]


def test_a_user_who_is_not_an_operator_is_refused_and_the_attempt_is_logged(
    people: People, agent: Agent, db: Database
) -> None:
    olga = people.user("olga", operator=True)
    mallory = people.user("mallory")

    problem(mallory.post("/v1/admin/hosts/h1/evacuate"), 403, "forbidden")

    (event,) = _events(olga, action="admin.host.evacuate")
    assert _seen(event)[:6] == (
        "admin.host.evacuate",
        "failure",
        mallory.id,
        "mallory@example.test",
        "testclient",
        "h1",
    )
    with db.reading() as session:
        assert list(session.scalars(select(Host.allocation_state))) == [AllocationState.ACCEPTING]


def test_reading_leaves_no_event(people: People, agent: Agent) -> None:
    olga = people.user("olga", operator=True)
    for path in ("/v1/admin/hosts", "/v1/admin/hosts/h1", "/v1/admin/locations"):
        assert olga.get(path).status_code == 200
    assert _events(olga) == []


def test_a_location_made_and_a_join_token_issued_are_logged_without_the_secret(
    people: People,
) -> None:
    olga = people.user("olga", operator=True)
    made = olga.post("/v1/admin/locations", json={"name": "ams1", "prefix": "2001:db8:2::/48"})
    assert made.status_code == 201, made.text
    token = olga.post("/v1/admin/locations/ams1/join-tokens", json={"expires_in": "30m"})
    assert token.status_code == 201, token.text

    joined, created = _events(olga)
    assert (created["action"], created["target"], created["detail"]) == (
        "admin.location.create",
        made.json()["id"],
        "ams1: 2001:db8:2::/48, multicast flooding",
    )
    assert (joined["action"], joined["target"]) == ("admin.location.join_token", made.json()["id"])
    assert joined["detail"].startswith("a join token to ams1, good until ")
    assert token.json()["secret"] not in str(_events(olga))

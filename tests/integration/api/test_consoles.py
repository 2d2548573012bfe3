"""A VM's console through the API: a member gets a one-time ticket (a viewer gets none,
an outsider sees no VM), the websocket spends it and reaches the console port of the
VM's host (a real relay, on a loopback address of this test's own), and closes when
the token is revoked; a used or late ticket opens nothing."""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from nubis.agent.console_relay import ConsoleRelay
from nubis.auth import tokens
from nubis.clock import now
from nubis.console_grant import host_key
from nubis.db import Database
from nubis.models import ApiToken, ConsoleTicket, Host, Role
from tests.capitals import serve_capitals
from tests.integration.api.host_agent import Agent
from tests.integration.api.people import People, Person, problem
from tests.integration.api.test_vms import alice, create, project  # noqa: F401


@pytest.fixture
def running(alice: Person, project: str, agent: Agent) -> str:  # noqa: F811
    """VM web1 of project web, running on the agent's host: its id."""
    vm: str = create(alice, project).json()["id"]
    agent.desired()
    agent.report(**{vm: "running"})
    return vm


@pytest.fixture
def relay(db: Database, agent: Agent, running: str) -> Iterator[ConsoleRelay]:
    """The host's console port, on a loopback address of its own, with web1's serial
    console behind it answering in capitals."""
    address = f"127.{random.randrange(1, 255)}.{random.randrange(1, 255)}.2"
    with db.transaction() as session:
        session.execute(update(Host).values(underlay_address=address))
    with tempfile.TemporaryDirectory(prefix="ca", dir="/tmp") as root:
        guest = serve_capitals(Path(root) / running / "serial.sock")
        relay = ConsoleRelay(Path(root), address, host_key(agent.credential))
        relay.start()
        yield relay
        relay.stop()
        guest.close()


def _ticket(person: Person, kind: str = "serial") -> dict[str, str]:
    answer = person.post("/v1/projects/web/vms/web1/console-tickets", json={"kind": kind})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def test_a_member_gets_a_ticket_a_viewer_none_and_an_outsider_sees_no_vm(
    people: People,
    alice: Person,  # noqa: F811
    running: str,
) -> None:
    bob, carol = people.user("bob"), people.user("carol")
    people.join("web", bob, Role.VIEWER)
    path = "/v1/projects/web/vms/web1/console-tickets"

    made = alice.post(path, json={"kind": "vnc"})
    by_viewer = bob.post(path, json={"kind": "serial"})
    by_outsider = carol.post(path, json={"kind": "serial"})
    unknown = alice.post(path, json={"kind": "ssh"})

    assert made.status_code == 201
    assert made.json()["kind"] == "vnc"
    assert made.json()["url"] == f"/v1/console?ticket={made.json()['ticket']}"
    problem(by_viewer, 403, "forbidden")
    problem(by_outsider, 404, "not_found")
    problem(unknown, 422)


def test_a_vm_that_does_not_run_has_no_console(
    alice: Person,  # noqa: F811
    project: str,  # noqa: F811
    agent: Agent,
) -> None:
    create(alice, project)

    refused = alice.post("/v1/projects/web/vms/web1/console-tickets", json={})

    assert "not running" in problem(refused, 409, "conflict")["detail"]


def test_the_websocket_reaches_the_serial_console_once_per_ticket(
    client: TestClient,
    alice: Person,  # noqa: F811
    relay: ConsoleRelay,
) -> None:
    url = _ticket(alice)["url"]

    with client.websocket_connect(url) as console:
        console.send_text("uname\r")
        answer = console.receive_bytes()
    with pytest.raises(WebSocketDenialResponse) as again:
        client.websocket_connect(url).__enter__()

    assert answer == b"UNAME\r"
    assert again.value.status_code == 401
    assert "used or late" in again.value.json()["detail"]


def test_a_late_ticket_opens_nothing(
    client: TestClient,
    db: Database,
    alice: Person,  # noqa: F811
    relay: ConsoleRelay,
) -> None:
    url = _ticket(alice)["url"]
    with db.transaction() as session:
        session.execute(update(ConsoleTicket).values(expires_at=now()))

    with pytest.raises(WebSocketDenialResponse) as late:
        client.websocket_connect(url).__enter__()

    assert late.value.status_code == 401


def test_an_open_console_closes_when_its_token_is_revoked(
    client: TestClient,
    db: Database,
    alice: Person,  # noqa: F811
    relay: ConsoleRelay,
) -> None:
    with db.transaction() as session:
        token, secret = tokens.issue(session, alice.key, "web-session")
    url = _ticket(Person(alice.name, alice.email, alice.key, secret, client))["url"]

    with client.websocket_connect(url) as console:
        with db.transaction() as session:  # as signing out does
            session.execute(
                update(ApiToken).where(ApiToken.id == token.id).values(revoked_at=now())
            )
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                console.receive_bytes()

    assert closed.value.code == 4401

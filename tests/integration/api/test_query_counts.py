"""Listing costs the same number of SQL statements however long the list: a page of 200
items takes as many as a page of one (no query per item).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any
from uuid import UUID

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, func, insert, select
from sqlalchemy.orm import Session

from nubis import sshkey
from nubis.auth import tokens
from nubis.auth.passwords import hash_password
from nubis.clock import now
from nubis.db import Database
from nubis.ids import Kind, new_id, parse_id
from nubis.models import (
    ApiToken,
    AuditEvent,
    FirewallRule,
    Host,
    Image,
    Invitation,
    Location,
    Membership,
    Network,
    Project,
    Role,
    SshKey,
    Strand,
    Subnet,
    User,
)
from tests.integration.api import fleet
from tests.integration.api.host_agent import Agent
from tests.integration.api.people import PASSWORD, People, Person

MANY = 200


@cache
def _password_hash() -> str:
    return hash_password(PASSWORD)


@dataclass(frozen=True)
class Caller:
    """An operator who owns project `project`, listing through `person`."""

    person: Person
    project: UUID


def _users(session: Session, count: int) -> list[UUID]:
    """`count` new users, all with one password."""
    ids = [new_id() for _ in range(count)]
    session.execute(
        insert(User),
        [
            {"id": key, "name": f"u{key.hex}"[:32], "email": f"{key.hex}@example.test"}
            | {"password_hash": _password_hash()}
            for key in ids
        ],
    )
    return ids


def _projects(session: Session, caller: Caller, count: int) -> None:
    ids = [new_id() for _ in range(count)]
    session.execute(insert(Project), [{"id": key, "name": f"p{key.hex}"[:32]} for key in ids])
    session.execute(
        insert(Membership),
        [{"project_id": key, "user_id": caller.person.key, "role": Role.VIEWER} for key in ids],
    )


def _members(session: Session, caller: Caller, count: int) -> None:
    session.execute(
        insert(Membership),
        [
            {"project_id": caller.project, "user_id": key, "role": Role.MEMBER}
            for key in _users(session, count)
        ],
    )


def _invitations_to_project(session: Session, caller: Caller, count: int) -> None:
    session.execute(
        insert(Invitation),
        [
            {"project_id": caller.project, "email": f"{new_id().hex}@example.test"}
            | {"role": Role.VIEWER, "invited_by": caller.person.key, "expires_at": _week()}
            for _ in range(count)
        ],
    )


def _invitations_to_caller(session: Session, caller: Caller, count: int) -> None:
    ids = [new_id() for _ in range(count)]
    session.execute(insert(Project), [{"id": key, "name": f"p{key.hex}"[:32]} for key in ids])
    session.execute(
        insert(Invitation),
        [
            {"project_id": key, "email": caller.person.email, "role": Role.MEMBER}
            | {"invited_by": caller.person.key, "expires_at": _week()}
            for key in ids
        ],
    )


def _week() -> datetime:
    return now() + timedelta(days=7)


def _tokens_of(session: Session, caller: Caller, count: int, project: UUID | None) -> None:
    session.execute(
        insert(ApiToken),
        [
            {
                "user_id": caller.person.key,
                "name": "more",
                "secret_sha256": tokens.digest(f"secret {new_id()}"),
                "project_id": project,
            }
            for _ in range(count)
        ],
    )


def _ssh_keys(session: Session, caller: Caller, count: int) -> None:
    rows = []
    for _ in range(count):
        blob = (
            Ed25519PrivateKey.generate()
            .public_key()
            .public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
        )
        key = sshkey.parse(blob.decode())
        rows.append(
            {
                "project_id": caller.project,
                "name": f"k{new_id().hex}"[:32],
                "public_key": key.line,
                "fingerprint": key.fingerprint,
            }
        )
    session.execute(insert(SshKey), rows)


def _audit_events(session: Session, _caller: Caller, count: int) -> None:
    session.execute(
        insert(AuditEvent),
        [
            {"action": "login", "outcome": "success", "email": "someone@example.test"}
            for _ in range(count)
        ],
    )


def _images(session: Session, caller: Caller, count: int, public: bool) -> None:
    owner = None if public else caller.project
    session.execute(
        insert(Image),
        [{"project_id": owner, "name": f"i{new_id().hex}"[:32]} for _ in range(count)],
    )


def _locations(session: Session, _caller: Caller, count: int) -> list[UUID]:
    ids = [new_id() for _ in range(count)]
    session.execute(
        insert(Location),
        [
            {"id": key, "name": f"l{key.hex}"[:32], "display_name": "counted"}
            | {"prefix": "2001:db8:c::/48", "flooding": "multicast"}
            for key in ids
        ],
    )
    return ids


def _hosts(session: Session, caller: Caller, count: int) -> None:
    """`count` hosts, each in a location of its own."""
    session.execute(
        insert(Host),
        [
            {"location_id": location, "name": f"h{location.hex}"[:32]}
            | {"credential_sha256": location.hex * 2, "arch": "x86_64", "acceleration": "tcg"}
            | {"underlay_address": "fd00::1", "cores": 8, "threads": 8}
            | {"memory_bytes": 2**30, "disk_bytes": 2**30}
            for location in _locations(session, caller, count)
        ],
    )


def _strands(session: Session, _caller: Caller, count: int) -> None:
    session.execute(
        insert(Strand),
        [{"prog": "tests:Counted", "label": "start", "stack": []} for _ in range(count)],
    )


def _networks(session: Session, caller: Caller, count: int) -> list[UUID]:
    """`count` networks of the caller's project, every other one with a /64."""
    location = session.scalars(select(Location).where(Location.name == "counted")).one_or_none()
    if location is None:
        location = Location(name="counted", display_name="counted", prefix="2001:db8:c::/48")
        session.add(location)
        session.flush()
    start = session.scalar(select(func.count()).select_from(Network)) or 0
    ids = [new_id() for _ in range(count)]
    session.execute(
        insert(Network),
        [
            {"id": key, "project_id": caller.project, "location_id": location.id}
            | {
                "name": f"n{key.hex}"[:32],
                "ipam": "auto" if i % 2 else "none",
                "vni": start + i + 1,
            }
            for i, key in enumerate(ids)
        ],
    )
    subnets = [
        {"location_id": location.id, "number": start + i + 1, "network_id": key}
        for i, key in enumerate(ids)
        if i % 2
    ]
    if subnets:
        session.execute(insert(Subnet), subnets)
    return ids


def _firewall_rules(session: Session, caller: Caller, count: int) -> None:
    (network,) = _networks(session, caller, 1)
    session.execute(
        insert(FirewallRule),
        [
            {"project_id": caller.project, "network_id": network, "protocol": "tcp"}
            | {"port_min": 22, "port_max": 22, "source": "::/0"}
            for _ in range(count)
        ],
    )


@dataclass(frozen=True)
class Listing:
    path: str
    given: int
    """How many items the list holds before any are added: the caller's own."""
    add: Callable[[Session, Caller, int], Any]

    def __str__(self) -> str:
        return self.path


LISTINGS = [
    Listing("/v1/projects", 1, _projects),
    Listing("/v1/projects/{project}/members", 1, _members),
    Listing("/v1/projects/{project}/invitations", 0, _invitations_to_project),
    Listing("/v1/invitations", 0, _invitations_to_caller),
    Listing("/v1/tokens", 1, lambda s, c, n: _tokens_of(s, c, n, None)),
    Listing("/v1/projects/{project}/tokens", 0, lambda s, c, n: _tokens_of(s, c, n, c.project)),
    Listing("/v1/projects/{project}/ssh-keys", 0, _ssh_keys),
    Listing("/v1/admin/users", 1, lambda s, _c, n: _users(s, n)),
    Listing("/v1/admin/audit", 0, _audit_events),
    Listing("/v1/projects/{project}/images", 0, lambda s, c, n: _images(s, c, n, public=False)),
    Listing("/v1/admin/images", 0, lambda s, c, n: _images(s, c, n, public=True)),
    Listing("/v1/admin/locations", 0, _locations),
    Listing("/v1/admin/hosts", 0, _hosts),
    Listing("/v1/admin/strands", 0, _strands),
    Listing("/v1/projects/{project}/networks", 0, _networks),
    Listing("/v1/projects/{project}/firewall-rules", 0, _firewall_rules),
]


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements sent to `engine` in the block."""
    sent: list[str] = []

    def record(*args: Any) -> None:
        # (connection, cursor, statement, parameters, context, executemany)
        sent.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


@pytest.mark.parametrize("listing", LISTINGS, ids=str)
def test_a_page_of_200_items_takes_as_many_statements_as_a_page_of_one(
    listing: Listing, db: Database, client: TestClient, people: People
) -> None:
    person = people.user("lister", operator=True)
    project = people.project("listed", {person: Role.OWNER})
    caller = Caller(person, parse_id(Kind.PROJECT, project))
    path = listing.path.format(project=project)

    def page() -> tuple[int, list[str]]:
        with statements(db.engine) as sent:
            response = person.get(path, params={"limit": 500})
        assert response.status_code == 200, response.text
        assert response.json()["next_cursor"] is None
        return len(response.json()["items"]), sent

    if listing.given == 0:
        with db.transaction() as session:
            listing.add(session, caller, 1)
    page()  # the pool's first connection, and the statement cache, warm up
    one, for_one = page()
    with db.transaction() as session:
        listing.add(session, caller, MANY - 1)
    many, for_many = page()

    assert (one, many) == (1, MANY)
    assert len(for_many) == len(for_one), (
        f"{len(for_one)} statements for one item, {len(for_many)} for {MANY}; the first:\n"
        + "\n".join(for_many[: len(for_one) + 3])
    )


def test_a_host_s_desired_state_takes_as_many_statements_for_many_vms_and_networks_as_for_one(
    db: Database, client: TestClient, people: People, agent: Agent
) -> None:
    person = people.user("builder")
    project = fleet.project_with_image(people, db, person)
    second = fleet.join(client, db, "h2", "fd00::2")
    rules = f"/v1/projects/{project}/firewall-rules"

    def grow(n: int) -> None:
        """Two VMs, one on each host, both in two new networks, each with rules."""
        names = [fleet.network(person, project, f"n{n}-{i}")["name"] for i in range(2)]
        for vm in (f"a{n}", f"b{n}"):
            fleet.vm(person, project, vm, networks=names, group=f"g{n}")
            fleet.created(person.post(rules, json={"vm": vm, "protocol": "icmp"}))
        for name in names:
            fleet.created(person.post(rules, json={"network": name, "protocol": "any"}))

    def desired() -> tuple[int, list[str]]:
        with statements(db.engine) as sent:
            found = agent.desired(anyway=True)
        second.desired(anyway=True)
        return len(found.vms), sent

    grow(0)
    desired()  # the pool's first connection, and the statement cache, warm up
    one, for_one = desired()
    for n in range(1, 4):
        grow(n)
    many, for_many = desired()

    assert (one, many) == (1, 4)
    assert len(for_many) == len(for_one), "\n".join(for_many)

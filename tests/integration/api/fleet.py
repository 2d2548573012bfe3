"""Hosts, a project with an image, and VMs in project networks, for the networking tests:
hosts join location `fra1` through the agent API and are played by the test."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx2
from fastapi.testclient import TestClient
from sqlalchemy import select

from nubis import hosts, locations
from nubis.db import Database
from nubis.ids import Kind, parse_id
from nubis.models import Host, Image, ImageState, Location, Role
from tests.integration.api.host_agent import Agent
from tests.integration.api.people import People, Person
from tests.integration.api.test_agent import REPORT

GIB = 1024**3


def join(
    client: TestClient, db: Database, name: str, underlay: str, location: str = "fra1"
) -> Agent:
    """A host `name` at `underlay` joined to `location` (made, unicast, if it is new)."""
    with db.transaction() as session:
        found = session.scalars(select(Location).where(Location.name == location)).one_or_none()
        if found is None:
            found = locations.create(session, location, "2001:db8:1::/48", flooding="unicast")
        token = hosts.issue_join_token(session, found.id, timedelta(hours=1))
    host = {**REPORT, "name": name, "underlay_address": underlay}
    answer = client.post("/v1/agent/register", json={"join_token": token, "host": host})
    assert answer.status_code == 201, answer.text
    return Agent(client, answer.json()["credential"])


def host_name(db: Database, host_id: str) -> str:
    """The name of the host `host_id` (a public id)."""
    with db.reading() as session:
        return session.get_one(Host, parse_id(Kind.HOST, host_id)).name


def revision(db: Database, name: str) -> int:
    """The host's desired revision."""
    with db.reading() as session:
        return session.scalars(select(Host.desired_revision).where(Host.name == name)).one()


def project_with_image(people: People, db: Database, person: Person, name: str = "web") -> str:
    """A project of `person`'s (a member) with an active image `tiny`; its id."""
    made = people.project(name, {person: Role.MEMBER})
    with db.transaction() as session:
        session.add(
            Image(
                name=f"tiny-{name}",
                state=ImageState.ACTIVE,
                size_bytes=20 * 2**20,
                virtual_size_bytes=GIB,
                sha256="ab" * 32,
            )
        )
    return made


def vm(person: Person, project: str, name: str, **extra: Any) -> Any:
    """A new VM (1 core, 1G) of the project's; its VmOut."""
    image = f"tiny-{person.get(f'/v1/projects/{project}').json()['name']}"
    body = {"name": name, "image": image, "cores": 1, "memory": "1G", "ssh_keys": [], **extra}
    answer = person.post(f"/v1/projects/{project}/vms", json=body)
    assert answer.status_code == 202, answer.text
    return answer.json()


def network(person: Person, project: str, name: str, **extra: Any) -> Any:
    """A new network of the project's; its NetworkOut."""
    answer = person.post(f"/v1/projects/{project}/networks", json={"name": name, **extra})
    assert answer.status_code == 201, answer.text
    return answer.json()


def created(answer: httpx2.Response, status: int = 201) -> Any:
    assert answer.status_code == status, answer.text
    return answer.json()

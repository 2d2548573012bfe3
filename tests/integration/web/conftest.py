"""The console over each store, the API's people and host agent, and a project `web`
with a member (alice), a viewer (bob), a host, an image and a key."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI

from nubis.config import Settings
from nubis.db import Database
from nubis.engine.dispatcher import Dispatcher
from nubis.models import Image, ImageState, Role
from nubis.secretbox import SecretBox
from nubis.web import create_app

# The API's fixtures, over the console's app (which serves the API too).
from tests.integration.api.conftest import agent, box, client, people  # noqa: F401
from tests.integration.api.host_agent import Agent
from tests.integration.api.people import People, Person
from tests.integration.web.visitor import Visitor

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILzBjTientSi8txdCYx9B4IlJASwI75+3nsZG3wAFPvp a@laptop"


@pytest.fixture
def app(db: Database, box: SecretBox, tmp_path: Path) -> FastAPI:  # noqa: F811
    return create_app(db, box, Settings(data_dir=tmp_path / "data", database_url="sqlite://"))


@pytest.fixture
def dispatcher(db: Database) -> Dispatcher:
    return Dispatcher(db, Settings(lease_seconds=30))


@pytest.fixture
def alice(people: People) -> Person:  # noqa: F811
    return people.user("alice")


@pytest.fixture
def bob(people: People) -> Person:  # noqa: F811
    return people.user("bob")


@pytest.fixture
def project(
    people: People,  # noqa: F811
    alice: Person,
    bob: Person,
    db: Database,
    agent: Agent,  # noqa: F811
) -> str:
    """Project `web`: alice a member, bob a viewer; one host, an image and a key."""
    made = people.project("web", {alice: Role.MEMBER, bob: Role.VIEWER})
    added = alice.post(f"/v1/projects/{made}/ssh-keys", json={"name": "laptop", "public_key": KEY})
    assert added.status_code == 201, added.text
    with db.transaction() as session:
        session.add(
            Image(
                name="tiny",
                state=ImageState.ACTIVE,
                size_bytes=20 * 2**20,
                virtual_size_bytes=2**30,
                sha256="ab" * 32,
            )
        )
    return made


def signed_in(app: FastAPI, person: Person) -> Visitor:
    visitor = Visitor(app)
    assert visitor.sign_in(person.email).status_code == 303
    return visitor

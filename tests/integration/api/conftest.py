"""An API over each store, and the people who call it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from nubis import hosts, locations
from nubis.api import create_app
from nubis.config import Settings
from nubis.db import Database
from nubis.secretbox import SecretBox
from tests.integration.api.host_agent import Agent
from tests.integration.api.people import People
from tests.integration.api.test_agent import REPORT


@pytest.fixture
def box(tmp_path: Path) -> SecretBox:
    return SecretBox.from_file(tmp_path / "secret.key")


@pytest.fixture
def app(db: Database, box: SecretBox, tmp_path: Path) -> FastAPI:
    # Uploads go to a data dir of the test's own.
    return create_app(db, box, Settings(data_dir=tmp_path / "data", database_url="sqlite://"))


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def people(db: Database, client: TestClient) -> People:
    return People(db, client)


@pytest.fixture
def agent(client: TestClient, db: Database) -> Agent:
    """A host joined to a location `fra1` (2001:db8:1::/48), played by the test."""
    with db.transaction() as session:
        location = locations.create(session, "fra1", "2001:db8:1::/48", flooding="unicast")
        token = hosts.issue_join_token(session, location.id, timedelta(hours=1))
    answer = client.post("/v1/agent/register", json={"join_token": token, "host": REPORT})
    assert answer.status_code == 201, answer.text
    return Agent(client, answer.json()["credential"])

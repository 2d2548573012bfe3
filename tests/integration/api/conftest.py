"""An API over each store, and the people who call it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from nubis.api import create_app
from nubis.config import Settings
from nubis.db import Database
from nubis.secretbox import SecretBox
from tests.integration.api.people import People


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

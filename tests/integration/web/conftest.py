"""The console over each store, the API's people and host agent, and a visitor who
uses the console as a browser would (forms, cookies, the CSRF token of each page)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI

from nubis.config import Settings
from nubis.db import Database
from nubis.secretbox import SecretBox
from nubis.web import create_app

# The API's fixtures, over the console's app (which serves the API too).
from tests.integration.api.conftest import agent, box, client, people  # noqa: F401


@pytest.fixture
def app(db: Database, box: SecretBox, tmp_path: Path) -> FastAPI:  # noqa: F811
    return create_app(db, box, Settings(data_dir=tmp_path / "data", database_url="sqlite://"))

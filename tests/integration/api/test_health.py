"""GET /v1/health, and the problem documents the API answers with."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from nubis.api import create_app
from nubis.db import Database
from nubis.secretbox import SecretBox

PROBLEM = "application/problem+json"


def _problem(response: httpx2.Response, status: int, code: str) -> dict[str, Any]:
    """The problem document of `response`, once its status and code are as expected."""
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    problem: dict[str, Any] = response.json()
    assert problem["code"] == code
    assert problem["status"] == status
    return problem


UNREACHABLE_URL = "postgresql://postgres@127.0.0.1:1/nubis"


@pytest.fixture
def unreachable(box: SecretBox) -> Iterator[TestClient]:
    """A client of an API whose PostgreSQL server does not listen."""
    db = Database.connect(UNREACHABLE_URL)
    try:
        with TestClient(create_app(db, box), raise_server_exceptions=False) as test_client:
            yield test_client
    finally:
        db.dispose()


def test_health_answers_ok_and_names_the_store(client: TestClient, db: Database) -> None:
    response = client.get("/v1/health")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"status": "ok", "database": db.engine.dialect.name}
    assert response.json()["database"] in {"sqlite", "postgresql"}


def test_an_unknown_path_answers_a_not_found_problem(client: TestClient) -> None:
    problem = _problem(client.get("/v1/no-such-thing"), 404, "not_found")
    assert problem["detail"]


def test_a_wrong_method_answers_a_problem(client: TestClient) -> None:
    response = client.post("/v1/health")
    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["status"] == 405


def test_openapi_lists_health(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["info"]["title"] == "nubis"
    assert "get" in document["paths"]["/v1/health"]


def test_health_of_an_unreachable_database_is_a_problem_without_internals(
    unreachable: TestClient,
) -> None:
    response = unreachable.get("/v1/health")
    assert response.status_code >= 500
    assert response.headers["content-type"] == PROBLEM
    body = response.text
    for leak in ("Traceback", "OperationalError", "psycopg", "127.0.0.1", 'File "'):
        assert leak not in body
    assert response.json()["status"] == response.status_code


def test_health_of_an_unreachable_database_answers_unavailable(
    unreachable: TestClient,
) -> None:
    problem = _problem(unreachable.get("/v1/health"), 503, "unavailable")
    assert problem["detail"] == "the database does not answer"

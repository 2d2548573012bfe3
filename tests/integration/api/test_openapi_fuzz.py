"""Property-based fuzzing of the whole OpenAPI document with schemathesis: whatever is
sent, valid or not, the API never answers 5xx, and every answer matches the document
(status, content type, headers, body).

Each operation is fuzzed as an operator who owns project `fuzz`, and as a plain member
and a viewer of it (each example sent as both), so refusals (403, 404) are fuzzed too.
The member and the viewer skip schemathesis's coverage phase (some 30 boundary and
malformed cases per operation, which validation answers the same whatever the
caller's role, and which the operator's run has) and get fewer random examples: the
suite has a time budget.
"""

from __future__ import annotations

from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from nubis.api import create_app
from nubis.db import Database
from nubis.models import Role
from nubis.secretbox import SecretBox
from tests.integration.api.people import People


def _document_app() -> FastAPI:
    """An app to read the document from; each test calls its own app on a real store."""
    with TemporaryDirectory() as scratch:
        box = SecretBox.from_file(Path(scratch) / "secret.key")
    return create_app(Database.connect("sqlite://"), box)


def _schema(*, coverage: bool) -> schemathesis.BaseSchema:
    loaded = schemathesis.openapi.from_asgi("/openapi.json", _document_app())
    loaded.config.generation.update(deterministic=True)
    loaded.config.phases.coverage.enabled = coverage
    return loaded


schema = _schema(coverage=True)
random_only = _schema(coverage=False)

MEMBER_EXAMPLES = 10
"""Random examples per operation, each sent as the member and as the viewer (the
operator gets 30, and the coverage phase)."""

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error_or_an_undocumented_answer(
    case: schemathesis.Case[Any], app: FastAPI, people: People
) -> None:
    operator = people.fuzz_operator()
    case.call_and_validate(app=app, headers=operator.auth, checks=CHECKS)


@random_only.parametrize()
@settings(max_examples=MEMBER_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_of_a_member_or_a_viewer_gets_a_server_error_or_an_undocumented_answer(
    case: schemathesis.Case[Any], app: FastAPI, people: People
) -> None:
    # Both roles in one test: a test's own database and app cost more than its examples.
    for role in (Role.MEMBER, Role.VIEWER):
        caller = people.fuzzer(role)
        case.call_and_validate(app=app, headers=caller.auth, checks=CHECKS)

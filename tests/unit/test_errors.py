"""The error tree: one HTTP status and one stable code per class, as problem+json."""

from __future__ import annotations

import pytest

from nubis.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    MalformedRequest,
    NoCapacity,
    NotFound,
    NubisError,
    PayloadTooLarge,
    SecondFactorRequired,
    TooManyRequests,
    Unauthenticated,
    Unavailable,
    from_problem,
)


def _tree(root: type[NubisError]) -> list[type[NubisError]]:
    found = [root]
    for sub in root.__subclasses__():
        found.extend(_tree(sub))
    return found


ALL = _tree(NubisError)

EXPECTED = {
    NubisError: (500, "internal"),
    InvalidInput: (422, "invalid_input"),
    Unauthenticated: (401, "unauthenticated"),
    Forbidden: (403, "forbidden"),
    NotFound: (404, "not_found"),
    Conflict: (409, "conflict"),
    Unavailable: (503, "unavailable"),
    SecondFactorRequired: (401, "totp_required"),
    MalformedRequest: (400, "malformed_request"),
    NoCapacity: (409, "no_capacity"),
    PayloadTooLarge: (413, "payload_too_large"),
    TooManyRequests: (429, "too_many_requests"),
}


def test_the_tree_has_the_documented_classes() -> None:
    assert set(EXPECTED) <= set(ALL)


@pytest.mark.parametrize("kind", ALL, ids=lambda kind: kind.__name__)
def test_problem_carries_status_code_and_detail(kind: type[NubisError]) -> None:
    problem = kind("the detail").problem()
    assert problem["status"] == kind.status
    assert problem["code"] == kind.code
    assert problem["detail"] == "the detail"
    assert problem["title"] == kind.title
    assert problem["type"] == f"https://nubis.dev/errors/{kind.code}"
    assert "errors" not in problem


@pytest.mark.parametrize("kind", ALL, ids=lambda kind: kind.__name__)
def test_problem_lists_field_errors_when_given(kind: type[NubisError]) -> None:
    error = kind("two fields are wrong", errors={"name": "too long", "size": "negative"})
    assert error.problem()["errors"] == {"name": "too long", "size": "negative"}


@pytest.mark.parametrize("kind", list(EXPECTED), ids=lambda kind: kind.__name__)
def test_each_class_has_its_documented_status_and_code(kind: type[NubisError]) -> None:
    assert (kind.status, kind.code) == EXPECTED[kind]


def test_codes_are_unique_across_the_tree() -> None:
    codes = [kind.code for kind in ALL]
    assert len(codes) == len(set(codes)), codes


def test_statuses_are_http_errors() -> None:
    for kind in ALL:
        assert 400 <= kind.status <= 599, kind


def test_the_message_is_the_detail() -> None:
    error = NotFound("no vm web-1")
    assert str(error) == "no vm web-1"
    assert error.errors == {}


def test_too_many_requests_says_when_to_retry() -> None:
    assert TooManyRequests("slow down", retry_after=30).headers == {"Retry-After": "30"}


def test_unauthenticated_names_the_bearer_scheme() -> None:
    assert SecondFactorRequired("code").headers["WWW-Authenticate"].startswith("Bearer")


def test_a_problem_document_becomes_the_error_it_names() -> None:
    error = from_problem({"code": "totp_required", "detail": "need a code"}, 401)
    assert type(error) is SecondFactorRequired
    assert error.detail == "need a code"
    fields = from_problem({"code": "invalid_input", "detail": "bad", "errors": {"name": "x"}}, 422)
    assert fields.errors == {"name": "x"}


def test_an_unknown_problem_code_is_kept_as_a_plain_error() -> None:
    error = from_problem({"detail": "teapot"}, 418)
    assert type(error) is NubisError
    assert error.detail == "teapot"

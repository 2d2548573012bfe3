"""The OpenAPI document, completed where FastAPI cannot see: every error response is an
application/problem+json Problem, and POSTs take an `Idempotency-Key`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from nubis.api.idempotency import HEADER, MAX_KEY_LENGTH
from nubis.api.problems import MEDIA_TYPE
from nubis.api.schemas.common import Problem

_ERRORS = {
    "400": "The body cannot be parsed",
    "401": "No valid credentials",
    "403": "Not allowed",
    "404": "No such object, or not visible to the caller",
    "409": "The object's state forbids it, or a name is taken",
    "413": "The request body is too large",
    "422": "The request is invalid; `errors` says which fields and why",
    "429": "Too many attempts; retry after `Retry-After` seconds",
    "503": "The database does not answer",
}
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_IDEMPOTENCY_KEY = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": "Retrying with the same key and request gives the first answer again.",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
}


def _complete(operation: dict[str, Any], method: str, *, only: set[str] | None) -> None:
    responses = operation.setdefault("responses", {})
    for status, description in _ERRORS.items():
        if only is None or status in only:
            responses.setdefault(status, {"description": description})
    for status, response in responses.items():
        if status.startswith(("4", "5")):
            response["content"] = {MEDIA_TYPE: {"schema": _PROBLEM_REF}}
    if method == "post" and operation.get("security"):
        operation.setdefault("parameters", []).append(_IDEMPOTENCY_KEY)


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas["Problem"] = Problem.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
            for path, operations in document["paths"].items():
                only = {"503"} if path == "/v1/health" else None
                for method, operation in operations.items():
                    _complete(operation, method, only=only)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

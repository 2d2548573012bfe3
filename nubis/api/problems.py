"""Every error the API answers with is an application/problem+json document (RFC 9457)."""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException
from starlette.types import Send

from nubis.errors import (
    Conflict,
    InvalidInput,
    MalformedRequest,
    NotFound,
    NubisError,
    Unavailable,
)

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"

_BY_STATUS: dict[int, type[NubisError]] = {
    400: MalformedRequest,
    404: NotFound,
    409: Conflict,
}


def problem_response(error: NubisError) -> JSONResponse:
    return JSONResponse(
        error.problem(), status_code=error.status, media_type=MEDIA_TYPE, headers=error.headers
    )


async def send_problem(send: Send, error: NubisError) -> None:
    """Answer with `error` from ASGI middleware, outside FastAPI's handlers."""
    body = json.dumps(error.problem()).encode()
    headers = [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _field(location: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def _nubis_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, NubisError)
    if type(error) is NubisError:
        log.error("internal error: %s", error.detail)
        return problem_response(NubisError("the server failed to answer; it has been logged"))
    return problem_response(error)


async def _invalid_request(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    if any(e["type"] == "json_invalid" for e in error.errors()):
        return problem_response(MalformedRequest("the body is not valid JSON"))
    fields = {
        _field(tuple(e["loc"])): e["msg"].removeprefix("Value error, ") for e in error.errors()
    }
    summary = "; ".join(f"{name}: {message}" for name, message in fields.items())
    return problem_response(InvalidInput(f"the request is invalid: {summary}", errors=fields))


async def _http_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    kind = _BY_STATUS.get(error.status_code)
    if kind is not None:
        return problem_response(kind(str(error.detail)))
    body = {
        "type": "about:blank",
        "title": str(error.detail),
        "status": error.status_code,
        "code": "http_error",
        "detail": str(error.detail),
    }
    return JSONResponse(
        body, status_code=error.status_code, media_type=MEDIA_TYPE, headers=error.headers
    )


async def _integrity(_request: Request, error: Exception) -> JSONResponse:
    # A check-then-insert lost a race to a concurrent request: the unique constraint
    # had the last word.
    log.info("integrity error answered as a conflict: %s", error)
    return problem_response(Conflict("the request conflicts with a change made at the same time"))


async def _unstorable(_request: Request, error: Exception) -> JSONResponse:
    # A value that passed validation but that the store refuses (a NUL in a path, say).
    log.info("data error answered as invalid input: %s", error)
    return problem_response(InvalidInput("the request holds a value that cannot be stored"))


async def _store_down(_request: Request, error: Exception) -> JSONResponse:
    log.error("the database failed: %s", error)
    return problem_response(Unavailable("the database does not answer; try again shortly"))


async def _unexpected(_request: Request, error: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=error)
    return problem_response(NubisError("the server failed to answer; it has been logged"))


def install(app: FastAPI) -> None:
    app.add_exception_handler(NubisError, _nubis_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(IntegrityError, _integrity)
    app.add_exception_handler(OperationalError, _store_down)
    app.add_exception_handler(DataError, _unstorable)
    app.add_exception_handler(Exception, _unexpected)

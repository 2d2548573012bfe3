"""The web console: server-rendered pages (Jinja2, htmx for the live parts) at `/`,
served by the API's own process, acting through the API's route functions as the
signed-in user (see pages.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ExceptionHandler

from nubis.api import create_app as create_api_app
from nubis.config import Settings
from nubis.db import Database
from nubis.errors import NotFound, NubisError
from nubis.secretbox import SecretBox
from nubis.web import pages
from nubis.web.routes import (
    account,
    firewall,
    images,
    keys,
    members,
    networks,
    operator,
    projects,
    signin,
    vms,
)

# firewall before vms: /projects/P/vms/VM/rules is its route, not a VM action.
ROUTERS = (signin, account, operator, projects, members, keys, images, networks, firewall, vms)

API_PREFIX = "/v1/"


def vendor_dir() -> Path:
    """Where `make deps` installs the third-party browser code (npm ci in web/)."""
    return Path(__file__).resolve().parents[2] / "web" / "node_modules"


def create_app(db: Database, secret_box: SecretBox, settings: Settings | None = None) -> FastAPI:
    """What `nubis api` serves: the API under /v1, and the console's pages beside it."""
    app = create_api_app(db, secret_box, settings)
    install(app)
    return app


def install(app: FastAPI) -> None:
    """Add the console's pages and assets to the API's app; the API's routes keep
    answering problem+json, pages answer HTML."""
    for module in ROUTERS:
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    htmx = vendor_dir() / "htmx.org" / "dist"
    # Without `make deps` the pages still render; only their live parts stay still.
    app.mount("/vendor/htmx", StaticFiles(directory=htmx, check_dir=False), name="htmx")
    for kind in (NubisError, RequestValidationError):
        app.add_exception_handler(kind, _for_pages(app.exception_handlers[kind]))


def _for_pages(api_handler: ExceptionHandler) -> ExceptionHandler:
    # The API's handlers are HTTP handlers (starlette's type also admits websockets').
    for_api = cast(Callable[[Request, Exception], Awaitable[Response]], api_handler)

    async def handle(request: Request, error: Exception) -> Response:
        if request.url.path.startswith(API_PREFIX):
            return await for_api(request, error)
        if isinstance(error, NubisError):
            return pages.problem_page(request, error)
        # A page's path or query that does not parse names nothing there is.
        return pages.problem_page(request, NotFound("there is no such page"))

    return handle

"""The application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from nubis import __version__, revisions
from nubis.api import openapi, problems
from nubis.api.deps import known_query_only
from nubis.api.idempotency import Idempotency
from nubis.api.limits import BodyLimit
from nubis.api.paths import EncodedSlashes
from nubis.api.routes import (
    admin,
    admin_hosts,
    admin_images,
    admin_locations,
    admin_strands,
    agent,
    auth,
    consoles,
    firewall_rules,
    health,
    images,
    invitations,
    members,
    networks,
    projects,
    ssh_keys,
    tokens,
    users,
    vms,
)
from nubis.config import Settings
from nubis.db import Database
from nubis.secretbox import SecretBox

ROUTERS = (
    health,
    auth,
    users,
    projects,
    members,
    invitations,
    tokens,
    ssh_keys,
    images,
    vms,
    consoles,
    networks,
    firewall_rules,
    admin,
    admin_locations,
    admin_hosts,
    admin_images,
    admin_strands,
    agent,
)


@asynccontextmanager
async def _running(app: FastAPI) -> AsyncIterator[None]:
    """What an API process runs beside its requests, from its start to its end."""
    db: Database = app.state.database
    # Long polls hear of the revisions other processes raise.
    feeder = revisions.feeder(db)
    feeder.start()
    try:
        yield
    finally:
        feeder.stop()


def create_app(db: Database, secret_box: SecretBox, settings: Settings | None = None) -> FastAPI:
    app = FastAPI(
        lifespan=_running,
        title="nubis",
        version=__version__,
        description="An IPv6-first, API-first cloud. Errors are application/problem+json.",
        docs_url="/v1/docs",
        redoc_url=None,
        generate_unique_id_function=lambda route: route.name,
        dependencies=[Depends(known_query_only)],
    )
    app.state.database = db
    app.state.secret_box = secret_box
    app.state.settings = settings or Settings()
    problems.install(app)
    for module in ROUTERS:
        app.include_router(module.router)
    openapi.install(app)
    # Outermost last: the body limit applies before a body is read for idempotency.
    app.add_middleware(Idempotency, db=db, box=secret_box)
    app.add_middleware(BodyLimit)
    app.add_middleware(EncodedSlashes)
    return app

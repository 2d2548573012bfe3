"""The application factory."""

from __future__ import annotations

from fastapi import FastAPI

from nubis import __version__
from nubis.api import problems
from nubis.api.routes import health
from nubis.db import Database


def create_app(db: Database) -> FastAPI:
    app = FastAPI(title="nubis", version=__version__, docs_url="/v1/docs", redoc_url=None)
    app.state.database = db
    problems.install(app)
    app.include_router(health.router)
    return app

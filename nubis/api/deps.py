"""Dependencies routes declare (as `Annotated` aliases in the routes)."""

from __future__ import annotations

from fastapi import Request

from nubis.db import Database


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database

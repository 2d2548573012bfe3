"""GET /v1/health: for load balancers and `nubis up`'s own check."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import text

from nubis.api.deps import get_database
from nubis.db import Database
from nubis.errors import Unavailable

router = APIRouter()


class Health(BaseModel):
    status: str
    database: str


@router.get("/v1/health", response_model=Health)
def health(db: Annotated[Database, Depends(get_database)]) -> Health:
    try:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:
        raise Unavailable("the database does not answer") from error
    return Health(status="ok", database=db.engine.dialect.name)

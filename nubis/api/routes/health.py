"""GET /v1/health: for load balancers and `nubis up`'s own check."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import text

from nubis.api.deps import DatabaseDep
from nubis.errors import Unavailable

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    database: str


@router.get("/v1/health", response_model=Health)
def health(db: DatabaseDep) -> Health:
    try:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:
        raise Unavailable("the database does not answer") from error
    return Health(status="ok", database=db.engine.dialect.name)

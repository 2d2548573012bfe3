"""Dependencies routes declare, as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from nubis.auth import tokens
from nubis.auth.authz import Principal
from nubis.db import Database
from nubis.errors import Unauthenticated
from nubis.secretbox import SecretBox


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def get_secret_box(request: Request) -> SecretBox:
    box: SecretBox = request.app.state.secret_box
    return box


DatabaseDep = Annotated[Database, Depends(get_database)]
SecretBoxDep = Annotated[SecretBox, Depends(get_secret_box)]

_bearer = HTTPBearer(auto_error=False, description="An API token: `Authorization: Bearer nubis_…`")


def get_principal(
    db: DatabaseDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise Unauthenticated("this needs an API token: send `Authorization: Bearer <token>`")
    with db.reading() as session:
        return tokens.authenticate(session, credentials.credentials)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


SourceDep = Annotated[str, Depends(client_address)]

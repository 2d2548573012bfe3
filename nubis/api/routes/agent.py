"""`/v1/agent`: the API host agents call. A host authenticates with the credential it got
when it registered, never with a user's token.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from nubis import hosts
from nubis.api.deps import DatabaseDep
from nubis.config import Settings
from nubis.errors import Unauthenticated
from nubis.ids import Kind, format_id
from nubis.protocol import Heartbeat, Registered, Registration

router = APIRouter(prefix="/v1/agent", tags=["agent"])

_host_bearer = HTTPBearer(
    auto_error=False, scheme_name="HostCredential", description="A host's credential."
)
HostCredential = Annotated[HTTPAuthorizationCredentials | None, Depends(_host_bearer)]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


@router.post("/register", status_code=status.HTTP_201_CREATED)
def register(body: Registration, db: DatabaseDep, request: Request) -> Registered:
    """Join a location with a one-time join token; answers the host's credential, once."""
    with db.transaction() as session:
        host, credential = hosts.register(session, body.join_token, body.host, _settings(request))
        return Registered(host_id=format_id(Kind.HOST, host.id), credential=credential)


@router.post("/heartbeat", status_code=status.HTTP_204_NO_CONTENT)
def heartbeat(body: Heartbeat, db: DatabaseDep, credentials: HostCredential) -> Response:
    if credentials is None:
        raise Unauthenticated("this needs a host credential: `Authorization: Bearer …`")
    with db.transaction() as session:
        hosts.heartbeat(session, hosts.authenticate(session, credentials.credentials))
    return Response(status_code=status.HTTP_204_NO_CONTENT)

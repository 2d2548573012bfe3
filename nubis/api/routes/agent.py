"""`/v1/agent`: the API host agents call. A host authenticates with the credential it got
when it registered, never with a user's token.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status
from fastapi.responses import FileResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from nubis import hosts, peers, vms
from nubis.api.deps import DatabaseDep, SettingsDep
from nubis.db import Database
from nubis.desired import for_host
from nubis.errors import NotFound, Unauthenticated
from nubis.ids import Kind, format_id, parse_id
from nubis.images import store
from nubis.models import Image, ImageState
from nubis.protocol import Desired, Heartbeat, Registered, Registration, Status

router = APIRouter(prefix="/v1/agent", tags=["agent"])

MAX_WAIT_SECONDS = 60.0
POLL_SECONDS = 0.02
"""How often a long poll looks at its host's revision."""

_host_bearer = HTTPBearer(
    auto_error=False, scheme_name="HostCredential", description="A host's credential."
)
HostCredential = Annotated[HTTPAuthorizationCredentials | None, Depends(_host_bearer)]


@router.post("/register", status_code=status.HTTP_201_CREATED)
def register(body: Registration, db: DatabaseDep, settings: SettingsDep) -> Registered:
    """Join a location with a one-time join token; answers the host's credential, once."""
    with db.transaction() as session:
        host, credential = hosts.register(session, body.join_token, body.host, settings)
        return Registered(host_id=format_id(Kind.HOST, host.id), credential=credential)


def _credential(credentials: HostCredential) -> str:
    if credentials is None:
        raise Unauthenticated("this needs a host credential: `Authorization: Bearer …`")
    return credentials.credentials


@router.post("/heartbeat", status_code=status.HTTP_204_NO_CONTENT)
def heartbeat(
    body: Heartbeat, db: DatabaseDep, settings: SettingsDep, credentials: HostCredential
) -> Response:
    with db.transaction() as session:
        hosts.heartbeat(session, hosts.authenticate(session, _credential(credentials)))
        peers.heard(session, gap=settings.host_unreachable_seconds)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _desired_after(db: Database, credential: str, after: int, fence: float) -> Desired | None:
    with db.reading() as session:
        host = hosts.authenticate(session, credential)
        if host.desired_revision <= after:
            return None
        return for_host(session, host, fence_seconds=fence)


@router.get("/desired")
async def desired(
    db: DatabaseDep,
    settings: SettingsDep,
    credentials: HostCredential,
    after: Annotated[int, Query(ge=-1)] = -1,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)] = 0,
) -> Response:
    """The host's desired state once its revision is past `after`, waiting up to `wait`
    seconds for that (a long poll); 204 if it did not come in time."""
    credential = _credential(credentials)
    deadline = time.monotonic() + wait
    while True:
        found = await run_in_threadpool(
            _desired_after, db, credential, after, settings.host_fence_seconds
        )
        if found is not None:
            return Response(found.model_dump_json(), media_type="application/json")
        if time.monotonic() >= deadline:
            return Response(status_code=status.HTTP_204_NO_CONTENT)
        await asyncio.sleep(POLL_SECONDS)


@router.post("/status", status_code=status.HTTP_204_NO_CONTENT)
def report_status(
    body: Status, db: DatabaseDep, settings: SettingsDep, credentials: HostCredential
) -> Response:
    """What the host runs and sees of its peers, after a pass over its desired state;
    also a heartbeat."""
    with db.transaction() as session:
        host = hosts.authenticate(session, _credential(credentials))
        hosts.heartbeat(session, host)
        if peers.take_in(host, body):
            hosts.record(session, host.id, "fenced", "its agent stopped its VMs (self-fencing)")
        peers.heard(session, gap=settings.host_unreachable_seconds)
        vms.observe(session, host, body)
        for what in body.removed:
            hosts.record(session, host.id, "removed", what)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/images/{image}", response_class=FileResponse)
def fetch_image(
    image: str, db: DatabaseDep, settings: SettingsDep, credentials: HostCredential
) -> FileResponse:
    """An active image's file, for a host whose VM needs it."""
    with db.reading() as session:
        hosts.authenticate(session, _credential(credentials))
        found = session.get(Image, parse_id(Kind.IMAGE, image))
        if found is None or found.state != ImageState.ACTIVE:
            raise NotFound(f"no active image {image!r}")
    path = store.file_of(settings.data_dir, found.id)
    return FileResponse(path, media_type="application/octet-stream")

"""`/v1/agent`: the API host agents call. A host authenticates with the credential it got
when it registered, never with a user's token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status
from fastapi.responses import FileResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from nubis import hosts, peers, revisions, vms
from nubis.api.deps import DatabaseDep, SettingsDep
from nubis.db import Database
from nubis.desired import for_host
from nubis.errors import NotFound, Unauthenticated
from nubis.ids import Kind, format_id, parse_id
from nubis.images import store
from nubis.models import ON_HOST, Image, ImageState, Vm
from nubis.progs.host import HostMonitor
from nubis.protocol import Desired, Heartbeat, Registered, Registration, Status

router = APIRouter(prefix="/v1/agent", tags=["agent"])

MAX_WAIT_SECONDS = 60.0

_host_bearer = HTTPBearer(
    auto_error=False, scheme_name="HostCredential", description="A host's credential."
)
HostCredential = Annotated[HTTPAuthorizationCredentials | None, Depends(_host_bearer)]


@router.post("/register", status_code=status.HTTP_201_CREATED)
def register(body: Registration, db: DatabaseDep, settings: SettingsDep) -> Registered:
    """Join a location with a one-time join token; answers the host's credential, once."""
    with db.transaction() as session:
        host, credential = HostMonitor.assemble(session, body.join_token, body.host, settings)
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


_host_of: dict[str, str] = {}
"""The host each credential a long poll came with belongs to (a credential never
changes hosts)."""


@dataclass(frozen=True)
class _Look:
    host_id: str
    revision: int
    desired: Desired | None
    """Its desired state, if its revision is past the poll's."""


def _desired_after(db: Database, credential: str, after: int, fence: float) -> _Look:
    with db.reading() as session:
        host = hosts.authenticate(session, credential)
        if host.desired_revision <= after:
            return _Look(str(host.id), host.desired_revision, None)
        return _Look(
            str(host.id), host.desired_revision, for_host(session, host, fence_seconds=fence)
        )


@router.get("/desired")
async def desired(
    db: DatabaseDep,
    settings: SettingsDep,
    credentials: HostCredential,
    after: Annotated[int, Query(ge=-1)] = -1,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)] = 0,
) -> Response:
    """The host's desired state once its revision is past `after`, waiting up to `wait`
    seconds for that (a long poll); 204 if it did not come in time. A waiting poll asks
    the database again only when its host's revision was raised (`revisions.BELL`)."""
    credential = _credential(credentials)
    deadline = time.monotonic() + wait
    fence = settings.host_fence_seconds
    bell = revisions.BELL
    # The rings are counted from before the look, so none between the look and the
    # wait is missed: by the host's, once this process knows whose credential it is.
    known = _host_of.get(credential)
    rings = bell.seen(known) if known else bell.total()
    look = await run_in_threadpool(_desired_after, db, credential, after, fence)
    _host_of[credential] = look.host_id
    seen = rings if known == look.host_id else bell.seen(look.host_id)
    if look.desired is None and known != look.host_id and bell.total() != rings:
        # Rung while the host was not known yet, maybe for it: look once more.
        look = await run_in_threadpool(_desired_after, db, credential, after, fence)
    while look.desired is None:
        left = deadline - time.monotonic()
        waited_for = max(look.revision, after)
        if left <= 0 or not await bell.wait(look.host_id, seen, waited_for, left):
            return Response(status_code=status.HTTP_204_NO_CONTENT)
        seen = bell.seen(look.host_id)
        look = await run_in_threadpool(_desired_after, db, credential, after, fence)
    return Response(look.desired.model_dump_json(), media_type="application/json")


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
    """An active image's file, for a host that is to run a VM made from it (no other)."""
    with db.reading() as session:
        host = hosts.authenticate(session, _credential(credentials))
        image_id = parse_id(Kind.IMAGE, image)
        found = session.scalar(
            select(Image)
            .join(Vm, Vm.image_id == Image.id)
            .where(
                Image.id == image_id,
                Image.state == ImageState.ACTIVE,
                Vm.host_id == host.id,
                Vm.label.in_(ON_HOST),
            )
            .limit(1)
        )
        if found is None:
            raise NotFound(f"no active image {image!r} for a VM of this host")
    path = store.file_of(settings.data_dir, found.id)
    return FileResponse(path, media_type="application/octet-stream")

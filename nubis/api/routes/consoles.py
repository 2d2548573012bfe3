"""A VM's consoles: a ticket (`POST …/vms/{vm}/console-tickets`), then the websocket
`/v1/console?ticket=…`, spliced to the console port of the VM's host.

Browsers cannot send a header with a websocket, hence a ticket in the query: it is
good once and for 30 seconds, so a URL that ends up in a log opens nothing. The
websocket carries the console's bytes both ways, unchanged: RFB for `vnc` (what noVNC
speaks), the terminal's bytes for `serial`. It is closed with code 4000 + the HTTP
status of the reason (4401: signed out, 4403: role lost, 4404/4409: the VM deleted,
stopped or moved) when the console may no longer be open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from uuid import UUID

from fastapi import APIRouter, WebSocket, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect

from nubis import consoles, vms
from nubis.api.deps import DatabaseDep, PrincipalDep
from nubis.api.problems import MEDIA_TYPE
from nubis.api.schemas.vm import ConsoleTicketCreate, ConsoleTicketOut
from nubis.auth.authz import Action, project_access
from nubis.db import Database
from nubis.errors import NubisError, Unavailable
from nubis.models import ConsoleTicket
from nubis.protocol import ConsoleKind

log = logging.getLogger(__name__)

router = APIRouter(tags=["vms"])

PATH = "/v1/console"
RECHECK_SECONDS = 2.0
"""How often an open console asks whether it may stay open."""
CONNECT_SECONDS = 5.0
"""How long the host has to take the grant and open the VM's socket."""
CHUNK = 64 * 1024


@router.post("/v1/projects/{project}/vms/{vm}/console-tickets", status_code=status.HTTP_201_CREATED)
def open_ticket(
    project: str, vm: str, body: ConsoleTicketCreate, db: DatabaseDep, principal: PrincipalDep
) -> ConsoleTicketOut:
    """A one-time ticket to the running VM's console, for whoever may change the VM
    (a viewer may not); open the answer's `url` as a websocket within 30 seconds."""
    with db.transaction() as session:
        access = project_access(session, principal, project, Action.WRITE)
        found = vms.find(session, access.project.id, vm)
        ticket, secret = consoles.open_ticket(session, principal, found, body.kind)
        return ConsoleTicketOut(
            ticket=secret,
            kind=ConsoleKind(ticket.kind),
            expires_at=ticket.expires_at,
            url=f"{PATH}?ticket={secret}",
        )


def _spend(db: Database, secret: str) -> tuple[UUID, consoles.Reach]:
    with db.transaction() as session:
        ticket = consoles.redeem(session, secret)
        kind = ConsoleKind(session.get_one(ConsoleTicket, ticket).kind)
        return ticket, consoles.reach(session, ticket, kind)


def _recheck(db: Database, ticket: UUID) -> None:
    with db.reading() as session:
        consoles.still_open(session, ticket)


@router.websocket(PATH)
async def console(websocket: WebSocket, ticket: str = "") -> None:
    db: Database = websocket.app.state.database
    try:
        ticket_id, reach = await run_in_threadpool(_spend, db, ticket)
        reader, writer = await _connect(reach)
    except NubisError as refused:
        await websocket.send_denial_response(
            JSONResponse(refused.problem(), status_code=refused.status, media_type=MEDIA_TYPE)
        )
        return
    offered = websocket.scope.get("subprotocols", [])
    await websocket.accept("binary" if "binary" in offered else None)
    closing = await _splice(websocket, reader, writer, db, ticket_id)
    writer.close()
    with contextlib.suppress(Exception):
        await websocket.close(*closing)


async def _connect(reach: consoles.Reach) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(reach.host, reach.port), CONNECT_SECONDS
        )
        writer.write(reach.line)
        await writer.drain()
        answer = await asyncio.wait_for(reader.readline(), CONNECT_SECONDS)
    except (OSError, TimeoutError) as error:
        raise Unavailable(f"the VM's host does not answer for its console: {error}") from None
    if answer != b"ok\n":
        writer.close()
        raise Unavailable("the VM's host could not open its console")
    return reader, writer


async def _splice(
    websocket: WebSocket,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    db: Database,
    ticket: UUID,
) -> tuple[int, str]:
    """Copy both ways until a side closes or the console may stay open no longer; the
    close code and reason for the user."""

    async def to_vm() -> tuple[int, str]:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                data = message.get("bytes") or (message.get("text") or "").encode()
                writer.write(data)
                await writer.drain()
        return 1000, "closed"

    async def to_user() -> tuple[int, str]:
        while data := await reader.read(CHUNK):
            await websocket.send_bytes(data)
        return 1000, "the console closed"

    async def watch() -> tuple[int, str]:
        while True:
            await asyncio.sleep(RECHECK_SECONDS)
            try:
                await run_in_threadpool(_recheck, db, ticket)
            except NubisError as ended:
                return 4000 + ended.status, ended.detail[:120]

    tasks = [asyncio.create_task(work()) for work in (to_vm, to_user, watch)]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
    first = done.pop()
    try:
        return first.result()
    except (OSError, RuntimeError, WebSocketDisconnect) as broken:
        log.info("console ended: %s", broken)
        return 1011, "the console broke"

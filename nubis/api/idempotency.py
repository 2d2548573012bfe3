"""`Idempotency-Key` on POST: a retried request gets the first answer, not a second resource.

The first request with a key claims it (a row, unique per caller and key) before it
runs, and stores its answer after. A retry with the same key and the same request
gets the stored answer; with another request (method, path, query or body) it is a
409, as is a retry while the first is still being answered. An answer of 5xx is not
kept, so the request may be retried. Keys last 24 hours. Requests without credentials
(logins) are not covered: their keys would be shared by every anonymous caller.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from uuid import UUID

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nubis.api.problems import send_problem
from nubis.clock import now
from nubis.db import Database
from nubis.errors import Conflict, InvalidInput
from nubis.models import IdempotentRequest

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
LIFETIME = timedelta(hours=24)
MAX_STORED_BODY = 1024 * 1024


def _claim(
    db: Database, credential: str, key: str, fingerprint: str
) -> UUID | IdempotentRequest | Conflict:
    """The new claim's id, the stored answer to give again, or why neither."""
    with db.transaction() as session:
        # Expired keys go first (any caller's: the index on created_at makes it cheap).
        session.execute(
            delete(IdempotentRequest).where(IdempotentRequest.created_at < now() - LIFETIME)
        )
        found = session.scalars(
            select(IdempotentRequest).where(
                IdempotentRequest.credential == credential, IdempotentRequest.key == key
            )
        ).one_or_none()
        if found is not None:
            if found.fingerprint != fingerprint:
                return Conflict(
                    f"the {HEADER} was used for another request; use a new key for this one"
                )
            if found.status is None:
                return Conflict(f"a request with this {HEADER} is still being answered")
            session.expunge(found)
            return found
        claim = IdempotentRequest(credential=credential, key=key, fingerprint=fingerprint)
        session.add(claim)
        try:
            session.flush()
        except IntegrityError:
            return Conflict(f"a request with this {HEADER} is still being answered")
        return claim.id


def _settle(db: Database, claim: UUID, status: int, content_type: str, body: bytes) -> None:
    with db.transaction() as session:
        row = session.get(IdempotentRequest, claim)
        if row is None:
            return
        if status >= 500 or len(body) > MAX_STORED_BODY:
            session.delete(row)
        else:
            row.status, row.content_type, row.body = status, content_type, body


def _release(db: Database, claim: UUID) -> None:
    with db.transaction() as session:
        session.execute(delete(IdempotentRequest).where(IdempotentRequest.id == claim))


class Idempotency:
    def __init__(self, app: ASGIApp, db: Database) -> None:
        self.app = app
        self.db = db

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"]) if scope["type"] == "http" else {}
        raw_key = headers.get(HEADER.lower().encode())
        authorization = headers.get(b"authorization")
        if scope["type"] != "http" or scope["method"] != "POST" or raw_key is None:
            await self.app(scope, receive, send)
            return
        if authorization is None:
            await self.app(scope, receive, send)
            return
        key = raw_key.decode("latin-1")
        if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
            await send_problem(
                send,
                InvalidInput(
                    f"the {HEADER} must be 1 to {MAX_KEY_LENGTH} printable characters",
                    errors={HEADER: "1 to 255 printable characters"},
                ),
            )
            return

        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        fingerprint = hashlib.sha256(
            b"\0".join([scope["path"].encode(), scope.get("query_string", b""), bytes(body)])
        ).hexdigest()
        credential = hashlib.sha256(authorization).hexdigest()
        claimed = await run_in_threadpool(_claim, self.db, credential, key, fingerprint)
        if isinstance(claimed, Conflict):
            await send_problem(send, claimed)
            return
        if isinstance(claimed, IdempotentRequest):
            await _replay(send, claimed)
            return
        await self._answer(scope, bytes(body), send, claimed)

    async def _answer(self, scope: Scope, body: bytes, send: Send, claim: UUID) -> None:
        given = False

        async def replay_body() -> Message:
            nonlocal given
            if given:
                return {"type": "http.disconnect"}
            given = True
            return {"type": "http.request", "body": body, "more_body": False}

        status, content_type, answer = 500, "", bytearray()

        async def capture(message: Message) -> None:
            nonlocal status, content_type
            if message["type"] == "http.response.start":
                status = message["status"]
                content_type = dict(message.get("headers", [])).get(b"content-type", b"").decode()
            elif message["type"] == "http.response.body":
                answer.extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replay_body, capture)
        except BaseException:
            await run_in_threadpool(_release, self.db, claim)
            raise
        await run_in_threadpool(_settle, self.db, claim, status, content_type, bytes(answer))


async def _replay(send: Send, stored: IdempotentRequest) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": stored.status,
            "headers": [
                (b"content-type", (stored.content_type or "application/json").encode()),
                (b"idempotent-replayed", b"true"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": stored.body or b""})

"""`Idempotency-Key` on POST: a retried request gets the first answer, not a second resource.

The caller is authenticated first, as every route does (`tokens.authenticate`): a
request whose credentials do not authenticate, or that has none (a login, a host's
agent), goes on to the app as it came, which answers it (401, say); its key is not
used, as it would be shared by everyone without a token. Keys are per token: another
token, even the same user's, never gets a stored answer, and a token that was revoked
or expired since gets its 401, not the answer.

The first request with a key claims it (a row, unique per token and key) before it
runs, and stores its answer after. A retry with the same key and the same request
gets the stored answer; with another request (path, query or body) it is a 409, as is
a retry while the first is still being answered. An answer of 5xx is not kept, so the
request may be retried. Keys last 24 hours.

An answer may hold a secret (a new token's, a TOTP seed): it is stored sealed with the
data dir's secret key, and the request is known by a keyed digest, since its body may
hold a password.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nubis.api.problems import send_problem
from nubis.auth import tokens
from nubis.clock import now
from nubis.db import Database
from nubis.errors import Conflict, InvalidInput, Unauthenticated
from nubis.models import IdempotentRequest
from nubis.secretbox import SecretBox

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
LIFETIME = timedelta(hours=24)
MAX_STORED_BODY = 1024 * 1024


def _token_of(db: Database, authorization: bytes) -> UUID | None:
    """The id of the live token `authorization` carries (as `Bearer …`), if it has one."""
    scheme, secret = get_authorization_scheme_param(authorization.decode("latin-1"))
    if scheme.lower() != "bearer" or not secret:
        return None
    with db.reading() as session:
        try:
            return tokens.authenticate(session, secret).token_id
        except Unauthenticated:
            return None


def _claim(
    db: Database, token_id: UUID, key: str, fingerprint: str
) -> UUID | IdempotentRequest | Conflict:
    """The new claim's id, the stored answer to give again, or why neither."""
    with db.transaction() as session:
        # Expired keys go first (any caller's: the index on created_at makes it cheap).
        session.execute(
            delete(IdempotentRequest).where(IdempotentRequest.created_at < now() - LIFETIME)
        )
        found = session.scalars(
            select(IdempotentRequest).where(
                IdempotentRequest.token_id == token_id, IdempotentRequest.key == key
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
        claim = IdempotentRequest(token_id=token_id, key=key, fingerprint=fingerprint)
        session.add(claim)
        try:
            session.flush()
        except IntegrityError:
            return Conflict(f"a request with this {HEADER} is still being answered")
        return claim.id


def _settle(
    db: Database, claim: UUID, status: int, content_type: str, sealed: bytes | None
) -> None:
    """Store the answer (its body sealed); None: keep none, the claim goes."""
    with db.transaction() as session:
        row = session.get(IdempotentRequest, claim)
        if row is None:
            return
        if sealed is None:
            session.delete(row)
        else:
            row.status, row.content_type, row.body = status, content_type, sealed


def _release(db: Database, claim: UUID) -> None:
    with db.transaction() as session:
        session.execute(delete(IdempotentRequest).where(IdempotentRequest.id == claim))


class Idempotency:
    def __init__(self, app: ASGIApp, db: Database, box: SecretBox) -> None:
        self.app = app
        self.db = db
        self.box = box

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"]) if scope["type"] == "http" else {}
        raw_key = headers.get(HEADER.lower().encode())
        authorization = headers.get(b"authorization")
        if scope["type"] != "http" or scope["method"] != "POST" or raw_key is None:
            await self.app(scope, receive, send)
            return
        token_id = None
        if authorization is not None:
            token_id = await run_in_threadpool(_token_of, self.db, authorization)
        if token_id is None:
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
        fingerprint = self.box.digest(
            b"\0".join([scope["path"].encode(), scope.get("query_string", b""), bytes(body)])
        )
        claimed = await run_in_threadpool(_claim, self.db, token_id, key, fingerprint)
        if isinstance(claimed, Conflict):
            await send_problem(send, claimed)
            return
        if isinstance(claimed, IdempotentRequest):
            await _replay(send, claimed, self.box.open(claimed.body) if claimed.body else b"")
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
        kept = status < 500 and len(answer) <= MAX_STORED_BODY
        sealed = self.box.seal(bytes(answer)) if kept else None
        await run_in_threadpool(_settle, self.db, claim, status, content_type, sealed)


async def _replay(send: Send, stored: IdempotentRequest, body: bytes) -> None:
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
    await send({"type": "http.response.body", "body": body})

"""The request body limit: a larger body is refused (413) before any of it is used.

A body with a Content-Length is judged by it (the server holds the client to it); a
chunked body is read up to the limit first and handed on only if it ends within it.
Image files (`PUT …/images/{image}/file`, of the API or of the web console's upload)
are streamed to disk by their route, which holds them to their own, larger limit.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nubis.api.problems import send_problem
from nubis.errors import PayloadTooLarge

MAX_BODY_BYTES = 1024 * 1024
STREAMED = re.compile(r"^(/v1/(projects/[^/]+|admin)|/projects/[^/]+)/images/[^/]+/file$")


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"] == "PUT" and STREAMED.match(scope["path"])):
            await self.app(scope, receive, send)
            return
        too_large = PayloadTooLarge(f"the request body is larger than {self.max_bytes} bytes")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.max_bytes:
                await send_problem(send, too_large)
                return
            await self.app(scope, receive, send)
            return

        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await send_problem(send, too_large)
                return
            if not message.get("more_body", False):
                break
        given = False

        async def replay() -> Message:
            nonlocal given
            if given:
                return await receive()
            given = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

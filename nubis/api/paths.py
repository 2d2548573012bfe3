"""Paths: a `/` sent encoded (`%2F`) inside a path segment is refused.

The router sees the decoded path, where `projects/web%2Fmembers` would become
`projects/web/members`, another route; no name or id holds a `/`, so no valid request
is lost by refusing it.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from nubis.api.problems import send_problem
from nubis.errors import NotFound


class EncodedSlashes:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw: bytes = scope.get("raw_path") or b""
        if scope["type"] == "http" and b"%2f" in raw.lower():
            await send_problem(send, NotFound("no such path: names and ids never hold a '/'"))
            return
        await self.app(scope, receive, send)

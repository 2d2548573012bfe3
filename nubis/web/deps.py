"""What the console's routes declare: the signed-in principal, and the CSRF check
every change passes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from nubis.api.deps import DatabaseDep
from nubis.auth.authz import Principal
from nubis.web import session


def signed_in(request: Request, db: DatabaseDep) -> Principal:
    return session.principal_of(request, db)


SignedIn = Annotated[Principal, Depends(signed_in)]

CHANGE = [Depends(session.check_csrf)]
"""The dependencies of every route that changes something."""


async def form_of(request: Request) -> dict[str, str]:
    """The posted form's text fields (the CSRF check has read it already)."""
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}

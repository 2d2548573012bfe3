"""A project's SSH keys: the list, a new key, removing one."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from nubis.api.deps import DatabaseDep
from nubis.api.routes import ssh_keys as api
from nubis.api.schemas.account import SshKeyCreate
from nubis.auth.authz import Principal
from nubis.db import Database
from nubis.errors import NubisError
from nubis.web import pages
from nubis.web.deps import CHANGE, SignedIn, form_of

router = APIRouter(prefix="/projects/{project}/keys", include_in_schema=False)


def _page(
    request: Request,
    db: Database,
    principal: Principal,
    project: str,
    *,
    form: dict[str, str] | None = None,
    error: NubisError | None = None,
) -> Response:
    page = pages.project_page(db, principal, project)
    return pages.render(
        request,
        "keys.html",
        page=page,
        keys=api.list_ssh_keys(project, db, principal, limit=100, cursor=None).items,
        form=form or {},
        error=error,
    )


@router.get("")
def list_page(request: Request, project: str, db: DatabaseDep, principal: SignedIn) -> Response:
    return _page(request, db, principal, project)


@router.post("", dependencies=CHANGE)
async def add(request: Request, project: str, db: DatabaseDep, principal: SignedIn) -> Response:
    form = await form_of(request)
    try:
        body = SshKeyCreate(name=form.get("name", ""), public_key=form.get("public_key", ""))
        api.add_ssh_key(project, body, db, principal)
    except (ValidationError, NubisError) as refused:
        return _page(request, db, principal, project, form=form, error=pages.refusal(refused))
    return pages.redirect(f"/projects/{project}/keys")


@router.post("/{key}/delete", dependencies=CHANGE)
def remove(project: str, key: str, db: DatabaseDep, principal: SignedIn) -> Response:
    api.remove_ssh_key(project, key, db, principal)
    return pages.redirect(f"/projects/{project}/keys")

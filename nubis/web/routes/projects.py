"""The projects page: the caller's projects, and a new one."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from nubis.api.deps import DatabaseDep
from nubis.api.routes import projects
from nubis.api.schemas.account import ProjectCreate
from nubis.auth.authz import Principal
from nubis.db import Database
from nubis.errors import NubisError
from nubis.web import pages
from nubis.web.deps import CHANGE, SignedIn, form_of

router = APIRouter(include_in_schema=False)


@router.get("/")
def home(db: DatabaseDep, principal: SignedIn) -> Response:
    mine = pages.switcher(db, principal)
    return pages.redirect(f"/projects/{mine[0].name}/vms" if mine else "/projects")


@router.get("/projects")
def list_page(request: Request, db: DatabaseDep, principal: SignedIn) -> Response:
    return pages.render(
        request, "projects.html", principal=principal, projects=pages.switcher(db, principal)
    )


@router.post("/projects", dependencies=CHANGE)
async def create(request: Request, db: DatabaseDep, principal: SignedIn) -> Response:
    form = await form_of(request)
    try:
        body = ProjectCreate(name=form.get("name", ""))
        made = projects.create_project(body, db, principal)
    except (ValidationError, NubisError) as refused:
        return _refused(request, db, principal, pages.refusal(refused))
    return pages.redirect(f"/projects/{made.name}/vms")


def _refused(request: Request, db: Database, principal: Principal, error: NubisError) -> Response:
    return pages.render(
        request,
        "projects.html",
        status_code=error.status,
        principal=principal,
        projects=pages.switcher(db, principal),
        error=error.detail,
    )

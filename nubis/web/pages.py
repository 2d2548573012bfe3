"""Rendering pages: the templates, what every page is given, and how an error looks.

Pages call the API's own route functions as the signed-in principal, so a page can
show or do exactly what the API allows that principal, and errors are the API's
errors (NubisError), rendered as HTML here instead of problem+json.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from nubis.api.routes import projects as api_projects
from nubis.api.schemas.account import ProjectOut
from nubis.auth.authz import Principal
from nubis.db import Database
from nubis.errors import InvalidInput, NubisError, Unauthenticated
from nubis.roles import Role
from nubis.units import format_size
from nubis.web import session

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.filters["size"] = format_size
templates.env.globals["CSRF_FIELD"] = session.CSRF_FIELD
templates.env.globals["CSRF_HEADER"] = session.CSRF_HEADER

LIVE_SECONDS = 2
"""How often a live part of a page (a list, a VM's state) asks for its news."""
SWITCHER = 100
"""Projects the project switcher lists (one page of the API's list)."""


def render(
    request: Request, template: str, *, status_code: int | None = None, **context: Any
) -> HTMLResponse:
    """A page (or, for htmx, a fragment) with what every template may use; its status
    is the `error`'s it shows, if any, unless told."""
    if status_code is None:
        error = context.get("error")
        status_code = error.status if isinstance(error, NubisError) else 200
    context.setdefault("csrf", session.session_csrf(request))
    context.setdefault("live_seconds", LIVE_SECONDS)
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    # Pages show private state; no cache, shared or not, keeps them.
    response.headers["Cache-Control"] = "no-store"
    return response


def may_write(role: str) -> bool:
    """Whether a project role may change the project's resources (what `Action.WRITE`
    needs): one decision per page, that every button on it follows."""
    return Role(role).rank >= Role.MEMBER.rank


def may_manage(role: str) -> bool:
    """Whether a role may manage members and tokens (`Action.MANAGE`)."""
    return Role(role).rank >= Role.ADMIN.rank


def own_path(target: str | None, default: str) -> str:
    """`target` if it is a path of this site, else `default`: a redirect to anywhere a
    form says would lend nubis's name to phishing."""
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return default


def redirect(url: str, request: Request | None = None) -> Response:
    """After a change: go to `url` (303, so the browser GETs it); htmx follows
    HX-Redirect instead of swapping the answer in."""
    if request is not None and request.headers.get("HX-Request"):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def refusal(refused: ValidationError | NubisError) -> NubisError:
    """Why a change was refused: the API's error, or a form that does not make a valid
    request body, as the API would refuse it."""
    return invalid(refused) if isinstance(refused, ValidationError) else refused


def invalid(error: ValidationError) -> InvalidInput:
    """A form that does not make a valid request body, as the API would refuse it."""
    fields = {
        ".".join(str(p) for p in e["loc"]) or "form": e["msg"].removeprefix("Value error, ")
        for e in error.errors()
    }
    summary = "; ".join(f"{name}: {message}" for name, message in fields.items())
    return InvalidInput(f"the request is invalid: {summary}", errors=fields)


def problem_page(request: Request, error: NubisError) -> Response:
    """An error as a page: sign-in for a missing session, else the API's own status
    and detail (a 404 for what the user may not see, exactly as the API answers)."""
    if isinstance(error, Unauthenticated):
        if request.headers.get("HX-Request"):
            return Response(status_code=401, headers={"HX-Redirect": "/login"})
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    detail = error.detail if type(error) is not NubisError else "the server failed to answer"
    template = "problem_fragment.html" if request.headers.get("HX-Request") else "problem.html"
    return render(request, template, status_code=error.status, title=error.title, detail=detail)


@dataclass(frozen=True)
class ProjectPage:
    """What every page of a project is given: the project as the API shows it to the
    principal (its role decides every button on the page), and the switcher's list."""

    principal: Principal
    project: ProjectOut
    projects: list[ProjectOut]

    @property
    def may_write(self) -> bool:
        return may_write(self.project.role)

    @property
    def may_manage(self) -> bool:
        return may_manage(self.project.role)


def switcher(db: Database, principal: Principal) -> list[ProjectOut]:
    """The projects the switcher lists."""
    return api_projects.list_projects(db, principal, limit=SWITCHER, cursor=None).items


def project_page(db: Database, principal: Principal, ref: str) -> ProjectPage:
    """The project `ref`, if the principal may see it (NotFound as from the API)."""
    project = api_projects.read_project(ref, db, principal)
    return ProjectPage(principal=principal, project=project, projects=switcher(db, principal))

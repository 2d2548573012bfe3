"""A project's members and their roles, and its invitations (the way in for a new
member): everyone in the project sees who is in it; admins change roles, remove
members, invite and withdraw invitations, as the API lets them."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from nubis.api.deps import DatabaseDep
from nubis.api.routes import invitations, members
from nubis.api.schemas.account import InvitationCreate, MemberUpdate
from nubis.auth.authz import Principal
from nubis.db import Database
from nubis.errors import NubisError
from nubis.roles import Role
from nubis.web import pages
from nubis.web.deps import CHANGE, SignedIn, form_of

router = APIRouter(prefix="/projects/{project}/members", include_in_schema=False)


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
    pending = (
        invitations.list_project_invitations(project, db, principal, limit=100, cursor=None).items
        if page.may_manage
        else []
    )
    return pages.render(
        request,
        "members.html",
        page=page,
        members=members.list_members(project, db, principal, limit=100, cursor=None).items,
        invitations=pending,
        roles=[role.value for role in Role],
        form=form or {},
        error=error,
    )


@router.get("")
def list_page(request: Request, project: str, db: DatabaseDep, principal: SignedIn) -> Response:
    return _page(request, db, principal, project)


@router.post("/{user}/role", dependencies=CHANGE)
async def change_role(
    request: Request, project: str, user: str, db: DatabaseDep, principal: SignedIn
) -> Response:
    form = await form_of(request)
    try:
        body = MemberUpdate.model_validate({"role": form.get("role", "")}, strict=False)
        members.update_member(project, user, body, db, principal)
    except (ValidationError, NubisError) as refused:
        return _page(request, db, principal, project, error=pages.refusal(refused))
    return pages.redirect(f"/projects/{project}/members")


@router.post("/{user}/delete", dependencies=CHANGE)
def remove(
    request: Request, project: str, user: str, db: DatabaseDep, principal: SignedIn
) -> Response:
    try:
        members.remove_member(project, user, db, principal)
    except NubisError as error:
        return _page(request, db, principal, project, error=error)
    return pages.redirect(f"/projects/{project}/members")


@router.post("/invitations", dependencies=CHANGE)
async def invite(request: Request, project: str, db: DatabaseDep, principal: SignedIn) -> Response:
    form = await form_of(request)
    try:
        body = InvitationCreate.model_validate(
            {"email": form.get("email", ""), "role": form.get("role") or Role.MEMBER},
            strict=False,
        )
        invitations.invite(project, body, db, principal)
    except (ValidationError, NubisError) as refused:
        return _page(request, db, principal, project, form=form, error=pages.refusal(refused))
    return pages.redirect(f"/projects/{project}/members")


@router.post("/invitations/{invitation}/delete", dependencies=CHANGE)
def withdraw(
    request: Request, project: str, invitation: str, db: DatabaseDep, principal: SignedIn
) -> Response:
    try:
        invitations.revoke_invitation(project, invitation, db, principal)
    except NubisError as error:
        return _page(request, db, principal, project, error=error)
    return pages.redirect(f"/projects/{project}/members")

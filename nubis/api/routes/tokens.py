"""API tokens: the caller's own (`/v1/tokens`) and those scoped to a project
(`/v1/projects/{project}/tokens`, for the project's admins).
"""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response, status
from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from nubis.api.deps import DatabaseDep, PrincipalDep
from nubis.api.pagination import Cursor, Limit, Page, fetch_page
from nubis.api.schemas.account import TokenCreate, TokenCreated, TokenOut
from nubis.auth import tokens
from nubis.auth.authz import Action, authorize, project_access
from nubis.clock import now
from nubis.db.refs import ref_clause
from nubis.errors import Conflict, NotFound
from nubis.ids import Kind
from nubis.models import ApiToken, User

router = APIRouter(tags=["tokens"])


def _live() -> Select[ApiToken, str]:
    at = now()
    return (
        select(ApiToken, User.name)
        .join(User, User.id == ApiToken.user_id)
        .where(
            ApiToken.revoked_at.is_(None),
            or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > at),
        )
    )


def _page(
    session: Session, query: Select[ApiToken, str], cursor: str | None, limit: int
) -> Page[TokenOut]:
    rows, next_cursor = fetch_page(
        session, query, ApiToken.id, cursor, limit, key_of=lambda r: r[0].id
    )
    return Page(items=[TokenOut.of(t, name) for t, name in rows], next_cursor=next_cursor)


def _revoke(session: Session, query: Select[ApiToken, str], ref: str) -> None:
    """Revoke the live token `ref` names (an id, or a name that only one token has)."""
    found = session.execute(
        query.where(ref_clause(Kind.TOKEN, ApiToken.id, ApiToken.name, ref)).limit(2)
    ).all()
    if not found:
        raise NotFound(f"no live token {ref!r}")
    if len(found) > 1:
        raise Conflict(f"more than one token is named {ref!r}; give its id")
    found[0][0].revoked_at = now()


@router.get("/v1/tokens")
def list_tokens(
    db: DatabaseDep, principal: PrincipalDep, limit: Limit = 100, cursor: Cursor = None
) -> Page[TokenOut]:
    """The caller's live tokens (their secrets are never shown again)."""
    authorize(principal, Action.MANAGE_ACCOUNT)
    with db.reading() as session:
        return _page(session, _live().where(ApiToken.user_id == principal.user_id), cursor, limit)


@router.post("/v1/tokens", status_code=status.HTTP_201_CREATED)
def create_token(body: TokenCreate, db: DatabaseDep, principal: PrincipalDep) -> TokenCreated:
    """A new token of the caller's, for all their projects or scoped to one."""
    authorize(principal, Action.MANAGE_ACCOUNT)
    lifetime = tokens.lifetime(body.expires_in)
    with db.transaction() as session:
        scope: UUID | None = None
        if body.project is not None:
            scope = project_access(session, principal, body.project, Action.READ).project.id
        token, secret = tokens.issue(
            session, principal.user_id, body.name, project_id=scope, lifetime=lifetime
        )
        return TokenCreated.of_new(token, principal.user_name, secret)


@router.delete("/v1/tokens/{token}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(token: str, db: DatabaseDep, principal: PrincipalDep) -> Response:
    """Revoke one of the caller's tokens; it is refused from the next request on."""
    authorize(principal, Action.MANAGE_ACCOUNT)
    with db.transaction() as session:
        _revoke(session, _live().where(ApiToken.user_id == principal.user_id), token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/v1/projects/{project}/tokens")
def list_project_tokens(
    project: str,
    db: DatabaseDep,
    principal: PrincipalDep,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[TokenOut]:
    """The live tokens scoped to this project, whoever holds them."""
    with db.reading() as session:
        access = project_access(session, principal, project, Action.MANAGE)
        return _page(
            session, _live().where(ApiToken.project_id == access.project.id), cursor, limit
        )


@router.delete("/v1/projects/{project}/tokens/{token}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_project_token(
    project: str, token: str, db: DatabaseDep, principal: PrincipalDep
) -> Response:
    with db.transaction() as session:
        access = project_access(session, principal, project, Action.MANAGE)
        _revoke(session, _live().where(ApiToken.project_id == access.project.id), token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

"""`/v1/admin/strands`: operators look into the engine's durable state machines and
give a failed one a fresh set of tries (`admin.strand.retry`, audited)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from nubis.api.deps import DatabaseDep, PrincipalDep
from nubis.api.operators import Change, change
from nubis.api.pagination import Cursor, Limit, Page, fetch_page
from nubis.api.schemas.strand import StrandDetailOut, StrandOut
from nubis.auth.authz import Action, authorize
from nubis.choices import StrandStatus
from nubis.engine import strand as strands
from nubis.errors import Conflict, NotFound
from nubis.ids import Kind, format_id, parse_id
from nubis.models.engine import Semaphore, Strand

router = APIRouter(prefix="/v1/admin/strands", tags=["admin"])


@router.get("")
def list_strands(
    db: DatabaseDep,
    principal: PrincipalDep,
    status: Annotated[StrandStatus | None, Query(description="Only strands in this state.")] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[StrandOut]:
    """Strands, newest first."""
    authorize(principal, Action.OPERATE)
    query = select(Strand)
    if status is not None:
        query = query.where(Strand.status == status)
    with db.reading() as session:
        rows, next_cursor = fetch_page(
            session, query, Strand.id, cursor, limit, key_of=lambda r: r[0].id, newest_first=True
        )
        return Page(items=[StrandOut.of(s) for (s,) in rows], next_cursor=next_cursor)


@router.get("/{strand}")
def read_strand(strand: str, db: DatabaseDep, principal: PrincipalDep) -> StrandDetailOut:
    """Everything about one strand: its stack, semaphores and last error."""
    authorize(principal, Action.OPERATE)
    key = parse_id(Kind.STRAND, strand)
    with db.reading() as session:
        found = session.get(Strand, key)
        if found is None:
            raise NotFound(f"no strand {format_id(Kind.STRAND, key)}")
        semaphores = session.scalars(
            select(Semaphore.name).where(Semaphore.strand_id == key).order_by(Semaphore.id)
        ).all()
        return StrandDetailOut.of_strand(found, list(semaphores))


@router.post("/{strand}/retry")
def retry_strand(strand: str, act: Annotated[Change, change("admin.strand.retry")]) -> StrandOut:
    """Run a failed strand's label again now, with a fresh set of tries; 409 unless it
    has failed."""
    key = parse_id(Kind.STRAND, strand)
    act.target = format_id(Kind.STRAND, key)
    with act.transaction() as session:
        if not strands.retry(session, key):
            found = session.get(Strand, key)
            if found is None:
                raise NotFound(f"no strand {act.target}")
            raise Conflict(
                f"{act.target} is {found.status}, not failed; only a failed strand can be retried"
            )
        revived = session.get(Strand, key, populate_existing=True)
        assert revived is not None
        act.detail = f"{revived.prog} at {revived.label}: runs again"
        return StrandOut.of(revived)

"""Starting strands and signalling them: what the rest of nubis calls."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from nubis.choices import StrandStatus
from nubis.clock import now
from nubis.engine.doorbell import ring_on_commit
from nubis.ids import new_id
from nubis.models.engine import Semaphore, Strand

if TYPE_CHECKING:  # the progs call this module to start their children
    from nubis.engine.prog import Prog


def start(
    session: Session,
    prog: type[Prog],
    frame: dict[str, Any] | None = None,
    *,
    label: str | None = None,
    parent_id: UUID | None = None,
    strand_id: UUID | None = None,
) -> UUID:
    """Create a strand of `prog`; it runs as soon as the session commits."""
    first = label or prog.start_label
    if first not in prog.labels:
        raise ValueError(f"{prog.name()} has no label {first!r}")
    strand_id = strand_id or new_id()
    when = now()
    session.execute(
        insert(Strand).values(
            id=strand_id,
            parent_id=parent_id,
            prog=prog.name(),
            label=first,
            stack=[{"data": dict(frame or {}), "link": None}],
            status=StrandStatus.ACTIVE,
            schedule=when,
            tries=0,
            reaped=False,
            created_at=when,
        )
    )
    ring_on_commit(session)
    return strand_id


def incr(session: Session, strand_id: UUID, name: str) -> bool:
    """Signal `name` to an active strand and wake it now. False if it is not active."""
    woken = session.execute(
        update(Strand)
        .where(Strand.id == strand_id, Strand.status == StrandStatus.ACTIVE)
        .values(schedule=now())
    )
    if woken.rowcount == 0:  # type: ignore[attr-defined]
        return False
    session.execute(insert(Semaphore).values(id=new_id(), strand_id=strand_id, name=name))
    ring_on_commit(session)
    return True


def retry(session: Session, strand_id: UUID) -> bool:
    """Give a failed strand a fresh set of tries, starting now. False if it had not failed."""
    revived = session.execute(
        update(Strand)
        .where(Strand.id == strand_id, Strand.status == StrandStatus.FAILED)
        .values(
            status=StrandStatus.ACTIVE, tries=0, schedule=now(), lease_owner=None, lease_until=None
        )
    )
    if revived.rowcount == 0:  # type: ignore[attr-defined]
        return False
    ring_on_commit(session)
    return True

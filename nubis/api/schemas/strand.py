"""Bodies of the operator's strand routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from nubis.ids import Kind, format_id
from nubis.models.engine import Strand


class StrandOut(BaseModel):
    id: str
    prog: str
    """The prog's module and class, e.g. `nubis.progs.vm:VmNexus`."""
    label: str
    """The label it runs next (or ran last)."""
    status: str
    """`active`, `failed` (stopped after too many tries; retry it) or `exited`."""
    tries: int
    """Failed tries of its current label."""
    schedule: datetime
    """When its label runs next."""
    leased: bool
    """A worker holds it right now."""
    parent: str | None
    error: str | None
    """The last line of its last error."""

    @classmethod
    def of(cls, strand: Strand) -> StrandOut:
        return cls(
            id=format_id(Kind.STRAND, strand.id),
            prog=strand.prog,
            label=strand.label,
            status=strand.status,
            tries=strand.tries,
            schedule=strand.schedule,
            leased=strand.lease_owner is not None,
            parent=format_id(Kind.STRAND, strand.parent_id) if strand.parent_id else None,
            error=strand.last_error.strip().splitlines()[-1] if strand.last_error else None,
        )


class StrandDetailOut(StrandOut):
    lease_until: datetime | None
    created_at: datetime
    finished_at: datetime | None
    semaphores: list[str]
    """Signals waiting for it (`destroy`, `evacuate`, …), oldest first."""
    stack: list[Any]
    """Its frames, innermost first: what it works on."""
    exitval: Any
    last_error: str | None
    """Its last error in full (a traceback)."""

    @classmethod
    def of_strand(cls, strand: Strand, semaphores: list[str]) -> StrandDetailOut:
        return cls(
            **StrandOut.of(strand).model_dump(),
            lease_until=strand.lease_until,
            created_at=strand.created_at,
            finished_at=strand.finished_at,
            semaphores=semaphores,
            stack=strand.stack,
            exitval=strand.exitval,
            last_error=strand.last_error,
        )

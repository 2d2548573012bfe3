"""Taking a strand for one worker, and the retry time written when it is taken."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID

from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    Update,
    bindparam,
    case,
    exists,
    literal_column,
    or_,
    select,
    update,
)

from nubis.choices import StrandStatus
from nubis.config import EngineSettings
from nubis.models.engine import Semaphore, Strand

SELF_KILL_FRACTION = 0.8
"""A worker kills itself once this share of its lease has passed (see `Lease.deadline`)."""

strand = cast(Table, Strand.__table__)
semaphore = cast(Table, Semaphore.__table__)


@dataclass(frozen=True)
class Lease:
    """A strand held by one worker, with what the worker needs to run its label."""

    strand_id: UUID
    owner: UUID
    prog: str
    label: str
    stack: list[Any]
    parent_id: UUID | None
    schedule: datetime
    """The schedule this worker wrote when it took the strand; a nap only replaces
    this exact value, so a wake-up written meanwhile survives the nap."""
    deadline: float
    """time.monotonic() by which the label must be done; measured from before the
    lease was written, so it falls before the lease ends whatever the latency."""
    held_since: float
    """time.monotonic() when this worker took the strand."""
    signalled: bool = True
    """Whether the strand had semaphores when its label was about to start; if not,
    the label's snapshot is known to be empty without asking the database again."""


def signalled() -> ColumnElement[bool]:
    """Whether the strand in the row at hand has any semaphore (for RETURNING).

    The outer reference is spelled out: in RETURNING, SQLAlchemy writes SQLite
    column names without their table, and a bare `id` would mean the semaphore's.
    """
    outer: ColumnElement[UUID] = literal_column("strand.id")
    return exists().where(semaphore.c.strand_id == outer).label("signalled")


def backoff(settings: EngineSettings, failures: int) -> float:
    """Seconds to wait after `failures` failed tries, jittered so retries spread out."""
    ceiling = min(settings.backoff_max_seconds, settings.backoff_base_seconds * 2.0**failures)
    return ceiling * random.uniform(0.75, 1.25)


class Taker:
    """Leases due strands for one worker, each in one atomic update."""

    def __init__(self, settings: EngineSettings, owner: UUID, postgres: bool) -> None:
        self.settings = settings
        self.owner = owner
        self._steps = 0
        while settings.backoff_base_seconds * 2.0**self._steps < settings.backoff_max_seconds:
            self._steps += 1
        self._statement = self._build(postgres)

    def _build(self, postgres: bool) -> Update:
        due = (
            select(strand.c.id)
            .where(
                strand.c.status == StrandStatus.ACTIVE,
                strand.c.schedule <= bindparam("now"),
                or_(strand.c.lease_until.is_(None), strand.c.lease_until <= bindparam("now")),
            )
            .order_by(strand.c.schedule)
            .limit(1)
        )
        if postgres:
            due = due.with_for_update(skip_locked=True)
        # The retry time depends on the row's `tries`; it is spelled as a CASE over
        # times computed beforehand so the whole lease stays one portable statement.
        retry_at: ColumnElement[datetime] = bindparam("retry_cap", type_=strand.c.schedule.type)
        if self._steps:
            retry_at = case(
                {
                    n: bindparam(f"retry_{n}", type_=strand.c.schedule.type)
                    for n in range(self._steps)
                },
                value=strand.c.tries,
                else_=retry_at,
            )
        return (
            update(strand)
            .where(strand.c.id == due.scalar_subquery())
            .values(
                lease_owner=bindparam("owner"),
                lease_until=bindparam("lease_until"),
                tries=strand.c.tries + 1,
                schedule=retry_at,
            )
            .returning(
                strand.c.id,
                strand.c.prog,
                strand.c.label,
                strand.c.stack,
                strand.c.parent_id,
                strand.c.schedule,
                strand.c.tries,
                signalled(),
            )
        )

    def take(self, connection: Connection, when: datetime) -> Lease | None:
        """Lease the strand that has waited longest; None if none is due."""
        started = time.monotonic()
        params: dict[str, Any] = {
            "now": when,
            "owner": self.owner,
            "lease_until": when + timedelta(seconds=self.settings.lease_seconds),
            "retry_cap": when + timedelta(seconds=backoff(self.settings, self._steps)),
        }
        for n in range(self._steps):
            params[f"retry_{n}"] = when + timedelta(seconds=backoff(self.settings, n))
        with connection.begin():
            row = connection.execute(self._statement, params).one_or_none()
        if row is None:
            return None
        if row.tries > self.settings.max_tries:
            self._give_up(connection, row.id, row.label, row.tries - 1)
            return None
        return Lease(
            strand_id=row.id,
            owner=self.owner,
            prog=row.prog,
            label=row.label,
            stack=row.stack,
            parent_id=row.parent_id,
            schedule=row.schedule,
            deadline=started + self.settings.lease_seconds * SELF_KILL_FRACTION,
            held_since=started,
            signalled=bool(row.signalled),
        )

    def _give_up(self, connection: Connection, strand_id: UUID, label: str, tries: int) -> None:
        """Fail a strand whose workers kept dying in `label` before they could say why."""
        with connection.begin():
            connection.execute(
                update(strand)
                .where(strand.c.id == strand_id, strand.c.lease_owner == self.owner)
                .values(
                    status=StrandStatus.FAILED,
                    tries=tries,
                    lease_owner=None,
                    lease_until=None,
                    last_error=f"gave up after {tries} tries: the worker running label "
                    f"{label!r} was lost before it finished",
                )
            )

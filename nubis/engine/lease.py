"""Taking a strand for one worker, and the retry time written when it is taken."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, case, literal, or_, select, update

from nubis.config import EngineSettings
from nubis.db import Database
from nubis.db.base import UTCDateTime
from nubis.models.engine import Strand, StrandStatus

SELF_KILL_FRACTION = 0.8
"""A worker kills itself once this share of its lease has passed (see `Lease.deadline`)."""


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


def backoff(settings: EngineSettings, failures: int) -> float:
    """Seconds to wait after `failures` failed tries, jittered so retries spread out."""
    ceiling = min(settings.backoff_max_seconds, settings.backoff_base_seconds * 2.0**failures)
    return ceiling * random.uniform(0.75, 1.25)


def retry_time(settings: EngineSettings, when: datetime) -> ColumnElement[datetime]:
    """When to try again should this attempt fail, as a function of the row's `tries`.

    Written at lease time, so a worker that dies mid-label is retried with backoff
    too. Spelled as a CASE over precomputed times to stay one portable statement.
    """
    steps = {}
    failures = 0
    while settings.backoff_base_seconds * 2.0**failures < settings.backoff_max_seconds:
        steps[failures] = _time(when + timedelta(seconds=backoff(settings, failures)))
        failures += 1
    cap = _time(when + timedelta(seconds=backoff(settings, failures)))
    return case(steps, value=Strand.tries, else_=cap) if steps else cap


def _time(value: datetime) -> ColumnElement[datetime]:
    return literal(value, UTCDateTime())


def take(db: Database, settings: EngineSettings, owner: UUID, when: datetime) -> Lease | None:
    """Lease the strand that has waited longest, in one atomic update; None if none is due."""
    started = time.monotonic()
    due = (
        select(Strand.id)
        .where(
            Strand.status == StrandStatus.ACTIVE,
            Strand.schedule <= when,
            or_(Strand.lease_until.is_(None), Strand.lease_until <= when),
        )
        .order_by(Strand.schedule)
        .limit(1)
    )
    if db.is_postgres:
        due = due.with_for_update(skip_locked=True)
    statement = (
        update(Strand)
        .where(Strand.id == due.scalar_subquery())
        .values(
            lease_owner=owner,
            lease_until=when + timedelta(seconds=settings.lease_seconds),
            tries=Strand.tries + 1,
            schedule=retry_time(settings, when),
        )
        .returning(
            Strand.id, Strand.prog, Strand.label, Strand.stack, Strand.parent_id,
            Strand.schedule, Strand.tries,
        )
    )
    with db.transaction() as session:
        row = session.execute(statement).one_or_none()
    if row is None:
        return None
    if row.tries > settings.max_tries:
        _give_up(db, row.id, owner, row.label, row.tries - 1)
        return None
    return Lease(
        strand_id=row.id,
        owner=owner,
        prog=row.prog,
        label=row.label,
        stack=row.stack,
        parent_id=row.parent_id,
        schedule=row.schedule,
        deadline=started + settings.lease_seconds * SELF_KILL_FRACTION,
        held_since=started,
    )


def _give_up(db: Database, strand_id: UUID, owner: UUID, label: str, tries: int) -> None:
    """Fail a strand whose workers kept dying in `label` before they could record why."""
    with db.transaction() as session:
        session.execute(
            update(Strand)
            .where(Strand.id == strand_id, Strand.lease_owner == owner)
            .values(
                status=StrandStatus.FAILED,
                tries=tries,
                lease_owner=None,
                lease_until=None,
                last_error=f"gave up after {tries} tries: the worker running label "
                f"{label!r} was lost before it finished",
            )
        )

"""Running one label of a leased strand and storing how it ended, atomically."""

from __future__ import annotations

import copy
import json
import logging
import time
import traceback
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import case, delete, func, or_, select, update
from sqlalchemy.orm import Session

from nubis.clock import now
from nubis.config import EngineSettings
from nubis.db import Database
from nubis.engine.doorbell import ring_on_commit
from nubis.engine.lease import SELF_KILL_FRACTION, Lease, backoff, take
from nubis.engine.prog import (
    Exit,
    Hop,
    LabelContext,
    Nap,
    Outcome,
    Pop,
    Push,
    SemaphoreSnapshot,
    resolve,
)
from nubis.ids import new_id
from nubis.models.engine import Semaphore, Strand, StrandStatus

log = logging.getLogger(__name__)

ERROR_TEXT_LIMIT = 8000
HOLD_SECONDS = 1.0
"""How long a worker may keep a strand that hops from label to label before it lets
other strands have a turn."""


class LeaseLost(Exception):  # noqa: N818
    """Another worker holds the strand now; this worker's label must not commit."""


class Dispatcher:
    """Takes due strands and runs their labels for one worker thread."""

    def __init__(self, db: Database, settings: EngineSettings, owner: UUID | None = None) -> None:
        self.db = db
        self.settings = settings
        self.owner = owner or new_id()

    def take(self) -> Lease | None:
        return take(self.db, self.settings, self.owner, now())

    def run(self, lease: Lease) -> Lease | None:
        """Run the leased label. Returns the lease again when the strand moved on to
        another label and this worker may go on running it, else None.
        """
        try:
            with self.db.transaction() as session:
                return self._run_label(session, lease)
        except LeaseLost:
            log.warning("strand %s: lease lost while running %s; its work was rolled back",
                        lease.strand_id, lease.label)
            return None
        except Exception as error:  # any failure of the label is recorded on the strand
            self._record_failure(lease, error)
            return None

    def release(self, lease: Lease) -> None:
        """Give back a strand this worker holds without running it."""
        with self.db.transaction() as session:
            session.execute(
                update(Strand)
                .where(Strand.id == lease.strand_id, Strand.lease_owner == self.owner)
                .values(lease_owner=None, lease_until=None, tries=0, schedule=now())
            )
            ring_on_commit(session)

    def seconds_to_next(self) -> float:
        """How long until some strand is due (capped by the idle wait setting)."""
        due = case(
            (Strand.lease_until > Strand.schedule, Strand.lease_until), else_=Strand.schedule
        )
        with self.db.transaction() as session:
            first = session.scalar(
                select(func.min(due)).where(Strand.status == StrandStatus.ACTIVE)
            )
        if first is None:
            return self.settings.idle_wait_seconds
        if isinstance(first, str):  # SQLite hands back the raw text from an aggregate
            first = datetime.fromisoformat(first).replace(tzinfo=now().tzinfo)
        wait = (first - now()).total_seconds()
        return min(max(wait, 0.0), self.settings.idle_wait_seconds)

    def purge(self) -> int:
        """Delete exited strands older than the retention time; how many went."""
        cutoff = now() - timedelta(seconds=self.settings.strand_retention_seconds)
        with self.db.transaction() as session:
            result = session.execute(
                delete(Strand).where(
                    Strand.status == StrandStatus.EXITED,
                    Strand.finished_at < cutoff,
                    or_(Strand.reaped.is_(True), Strand.parent_id.is_(None)),
                )
            )
        return int(result.rowcount)  # type: ignore[attr-defined]

    # one label

    def _run_label(self, session: Session, lease: Lease) -> Lease | None:
        prog = resolve(lease.prog)
        if lease.label not in prog.labels:
            raise LookupError(f"{lease.prog} has no label {lease.label!r}")
        rows = session.execute(
            select(Semaphore.id, Semaphore.name)
            .where(Semaphore.strand_id == lease.strand_id)
            .order_by(Semaphore.id)
        )
        snapshot = SemaphoreSnapshot(tuple((row.id, row.name) for row in rows))
        top = lease.stack[0]
        context = LabelContext(
            session=session,
            strand_id=lease.strand_id,
            frame=copy.deepcopy(top["data"]),
            retval=top.get("retval"),
            semaphores=snapshot,
        )
        try:
            getattr(prog(context), lease.label)()
        except Outcome as ended:
            outcome = ended
        else:
            raise RuntimeError(
                f"label {lease.label!r} of {lease.prog} returned without hop, nap, exit, "
                "push or pop"
            )
        stack = [{**top, "data": context.frame}, *lease.stack[1:]]
        return self._store(session, lease, outcome, stack)

    def _store(
        self, session: Session, lease: Lease, outcome: Outcome, stack: list[Any]
    ) -> Lease | None:
        match outcome:
            case Hop(label=label):
                return self._advance(session, lease, lease.prog, label, stack)
            case Push(prog=prog, frame=frame, then=then):
                called = [{"data": frame, "link": [lease.prog, then]}, *stack]
                return self._advance(session, lease, prog, resolve(prog).start_label, called)
            case Pop(value=value) if len(stack) > 1:
                caller_prog, caller_label = stack[0]["link"]
                caller = [{**stack[1], "retval": value}, *stack[2:]]
                return self._advance(session, lease, caller_prog, caller_label, caller)
            case Pop(value=value) | Exit(value=value):
                self._finish(session, lease, value, stack)
                return None
            case Nap(seconds=seconds):
                wake = now() + timedelta(seconds=seconds)
                self._write(session, lease, stack=_json(stack), lease_owner=None,
                            lease_until=None, tries=0, last_error=None,
                            schedule=case((Strand.schedule == lease.schedule, wake),
                                          else_=Strand.schedule))
                return None
        raise TypeError(f"unknown outcome {outcome!r}")

    def _advance(
        self, session: Session, lease: Lease, prog: str, label: str, stack: list[Any]
    ) -> Lease | None:
        """Move the strand to `prog`/`label`; keep holding it if its turn is not over."""
        started = time.monotonic()
        when = now()
        if started - lease.held_since >= HOLD_SECONDS:
            self._write(session, lease, prog=prog, label=label, stack=_json(stack),
                        lease_owner=None, lease_until=None, tries=0, last_error=None,
                        schedule=when)
            return None
        # Taking the next label at once is a new lease written in the same commit,
        # with its own retry time, exactly as `take` would write it.
        retry_at = when + timedelta(seconds=backoff(self.settings, 0))
        self._write(session, lease, prog=prog, label=label, stack=_json(stack),
                    lease_until=when + timedelta(seconds=self.settings.lease_seconds),
                    tries=1, last_error=None, schedule=retry_at)
        deadline = started + self.settings.lease_seconds * SELF_KILL_FRACTION
        return replace(lease, prog=prog, label=label, stack=stack, schedule=retry_at,
                       deadline=deadline)

    def _finish(self, session: Session, lease: Lease, value: Any, stack: list[Any]) -> None:
        _json(value)
        when = now()
        self._write(session, lease, status=StrandStatus.EXITED, exitval=value,
                    stack=_json(stack), lease_owner=None, lease_until=None, tries=0,
                    last_error=None, finished_at=when)
        session.execute(delete(Semaphore).where(Semaphore.strand_id == lease.strand_id))
        if lease.parent_id is not None:
            session.execute(
                update(Strand)
                .where(Strand.id == lease.parent_id, Strand.status == StrandStatus.ACTIVE)
                .values(schedule=when)
            )
            ring_on_commit(session)

    def _write(self, session: Session, lease: Lease, **values: Any) -> None:
        result = session.execute(
            update(Strand)
            .where(Strand.id == lease.strand_id, Strand.lease_owner == self.owner)
            .values(**values)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise LeaseLost(lease.strand_id)

    def _record_failure(self, lease: Lease, error: Exception) -> None:
        log.warning("strand %s: label %s of %s failed: %s",
                    lease.strand_id, lease.label, lease.prog, error)
        detail = "".join(traceback.format_exception(error))[-ERROR_TEXT_LIMIT:]
        try:
            with self.db.transaction() as session:
                session.execute(
                    update(Strand)
                    .where(Strand.id == lease.strand_id, Strand.lease_owner == self.owner)
                    .values(
                        last_error=detail,
                        lease_owner=None,
                        lease_until=None,
                        status=case(
                            (Strand.tries >= self.settings.max_tries, StrandStatus.FAILED),
                            else_=Strand.status,
                        ),
                    )
                )
        except Exception:
            # The lease runs out on its own and the retry time is already written.
            log.exception("strand %s: could not record the failure", lease.strand_id)


def _json(value: Any) -> Any:
    """`value` itself, once it is known to fit in a JSON column."""
    json.dumps(value)
    return value

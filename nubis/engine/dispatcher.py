"""Running one label of a leased strand and storing how it ended, atomically."""

from __future__ import annotations

import json
import logging
import time
import traceback
from dataclasses import replace
from datetime import timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BindParameter,
    Connection,
    Update,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from nubis.choices import StrandStatus
from nubis.clock import now
from nubis.config import EngineSettings
from nubis.db import Database
from nubis.engine.doorbell import ring_on_commit
from nubis.engine.lease import (
    SELF_KILL_FRACTION,
    Lease,
    Taker,
    backoff,
    semaphore,
    signalled,
    strand,
)
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

log = logging.getLogger(__name__)

ERROR_TEXT_LIMIT = 8000
HOLD_SECONDS = 1.0
"""How long a worker may keep a strand that hops from label to label before it lets
other strands have a turn."""


class LeaseLost(Exception):
    """Another worker holds the strand now; this worker's label must not commit."""


def _param(name: str) -> BindParameter[Any]:
    """A parameter typed like the strand column it fills."""
    return bindparam(f"p_{name}", type_=strand.c[name].type)


def _store(**values: Any) -> Update:
    """Update the strand if this worker still holds it; says if semaphores wait."""
    return (
        update(strand)
        .where(strand.c.id == bindparam("p_sid"), strand.c.lease_owner == bindparam("p_owner"))
        .values(**values)
        .returning(signalled())
    )


_RELEASED = {"lease_owner": None, "lease_until": None, "tries": 0, "last_error": None}

# Each way a label can end, built once: building statements costs more than running them.
HOLD = _store(
    prog=_param("prog"),
    label=_param("label"),
    stack=_param("stack"),
    lease_until=_param("lease_until"),
    tries=1,
    last_error=None,
    schedule=_param("schedule"),
)
LET_GO = _store(
    prog=_param("prog"),
    label=_param("label"),
    stack=_param("stack"),
    schedule=_param("schedule"),
    **_RELEASED,
)
NAP = _store(
    stack=_param("stack"),
    schedule=case(
        (
            strand.c.schedule == bindparam("p_seen", type_=strand.c.schedule.type),
            _param("schedule"),
        ),
        else_=strand.c.schedule,
    ),
    **_RELEASED,
)
EXIT = _store(
    status=StrandStatus.EXITED,
    exitval=_param("exitval"),
    stack=_param("stack"),
    finished_at=_param("finished_at"),
    **_RELEASED,
)


class Dispatcher:
    """Takes due strands and runs their labels for one worker thread, on one connection."""

    def __init__(self, db: Database, settings: EngineSettings, owner: UUID | None = None) -> None:
        self.db = db
        self.settings = settings
        self.owner = owner or new_id()
        self._taker = Taker(settings, self.owner, db.is_postgres)
        self._connection: Connection | None = None

    def take(self) -> Lease | None:
        return self._taker.take(self._connect(), now())

    def run(self, lease: Lease) -> Lease | None:
        """Run the leased label. Returns the lease again when the strand moved on to
        another label and this worker may go on running it, else None.
        """
        try:
            with self.db.sessions(bind=self._connect()) as session, session.begin():
                return self._run_label(session, lease)
        except LeaseLost:
            log.warning(
                "strand %s: lease lost while running %s; its work was rolled back",
                lease.strand_id,
                lease.label,
            )
            return None
        except Exception as error:  # any failure of the label is recorded on the strand
            self._record_failure(lease, error)
            return None

    def release(self, lease: Lease) -> None:
        """Give back a strand this worker holds without running it."""
        with self.db.sessions(bind=self._connect()) as session, session.begin():
            session.connection().execute(
                update(strand)
                .where(strand.c.id == lease.strand_id, strand.c.lease_owner == self.owner)
                .values(lease_owner=None, lease_until=None, tries=0, schedule=now())
            )
            ring_on_commit(session)

    def seconds_to_next(self) -> float:
        """How long until some strand is due (capped by the idle wait setting)."""
        due = case(
            (strand.c.lease_until > strand.c.schedule, strand.c.lease_until),
            else_=strand.c.schedule,
        )
        with self.db.reading() as session:
            first = session.connection().scalar(
                select(func.min(due).label("due")).where(strand.c.status == StrandStatus.ACTIVE)
            )
        if first is None:
            return self.settings.idle_wait_seconds
        wait: float = (first - now()).total_seconds()
        return min(max(wait, 0.0), self.settings.idle_wait_seconds)

    def purge(self) -> int:
        """Delete exited strands older than the retention time; how many went."""
        cutoff = now() - timedelta(seconds=self.settings.strand_retention_seconds)
        connection = self._connect()
        with connection.begin():
            result = connection.execute(
                delete(strand).where(
                    strand.c.status == StrandStatus.EXITED,
                    strand.c.finished_at < cutoff,
                    or_(strand.c.reaped.is_(True), strand.c.parent_id.is_(None)),
                )
            )
        return int(result.rowcount)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connect(self) -> Connection:
        """This worker's connection, opened again if the last one broke."""
        if self._connection is not None and (
            self._connection.closed or self._connection.invalidated
        ):
            self._connection.close()
            self._connection = None
        if self._connection is None:
            self._connection = self.db.engine.connect()
        return self._connection

    # one label

    def _run_label(self, session: Session, lease: Lease) -> Lease | None:
        prog = resolve(lease.prog)
        if lease.label not in prog.labels:
            raise LookupError(f"{lease.prog} has no label {lease.label!r}")
        snapshot = SemaphoreSnapshot()
        if lease.signalled:
            rows = session.connection().execute(
                select(semaphore.c.id, semaphore.c.name)
                .where(semaphore.c.strand_id == lease.strand_id)
                .order_by(semaphore.c.id)
            )
            snapshot = SemaphoreSnapshot(tuple((row.id, row.name) for row in rows))
        top = lease.stack[0]
        context = LabelContext(
            session=session,
            strand_id=lease.strand_id,
            frame=top["data"],
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
        return self._end(session, lease, outcome, stack)

    def _end(
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
                self._write(
                    session,
                    lease,
                    NAP,
                    stack=_json(stack),
                    seen=lease.schedule,
                    schedule=now() + timedelta(seconds=seconds),
                )
                return None
        raise TypeError(f"unknown outcome {outcome!r}")

    def _advance(
        self, session: Session, lease: Lease, prog: str, label: str, stack: list[Any]
    ) -> Lease | None:
        """Move the strand to `prog`/`label`; keep holding it if its turn is not over."""
        started = time.monotonic()
        when = now()
        if started - lease.held_since >= HOLD_SECONDS:
            self._write(
                session, lease, LET_GO, prog=prog, label=label, stack=_json(stack), schedule=when
            )
            return None
        # Going on with the next label is a new lease written in the same commit,
        # with its own retry time, exactly as taking the strand afresh would write it.
        retry_at = when + timedelta(seconds=backoff(self.settings, 0))
        waiting = self._write(
            session,
            lease,
            HOLD,
            prog=prog,
            label=label,
            stack=_json(stack),
            lease_until=when + timedelta(seconds=self.settings.lease_seconds),
            schedule=retry_at,
        )
        deadline = started + self.settings.lease_seconds * SELF_KILL_FRACTION
        return replace(
            lease,
            prog=prog,
            label=label,
            stack=stack,
            schedule=retry_at,
            deadline=deadline,
            signalled=waiting,
        )

    def _finish(self, session: Session, lease: Lease, value: Any, stack: list[Any]) -> None:
        when = now()
        self._write(
            session, lease, EXIT, exitval=_json(value), stack=_json(stack), finished_at=when
        )
        connection = session.connection()
        connection.execute(delete(semaphore).where(semaphore.c.strand_id == lease.strand_id))
        if lease.parent_id is not None:
            connection.execute(
                update(strand)
                .where(strand.c.id == lease.parent_id, strand.c.status == StrandStatus.ACTIVE)
                .values(schedule=when)
            )
            ring_on_commit(session)

    def _write(self, session: Session, lease: Lease, statement: Update, **params: Any) -> bool:
        """Run one of the prepared strand updates; whether semaphores are waiting."""
        values = {f"p_{name}": value for name, value in params.items()}
        row = (
            session.connection()
            .execute(statement, {"p_sid": lease.strand_id, "p_owner": self.owner, **values})
            .one_or_none()
        )
        if row is None:
            raise LeaseLost(lease.strand_id)
        return bool(row.signalled)

    def _record_failure(self, lease: Lease, error: Exception) -> None:
        log.warning(
            "strand %s: label %s of %s failed: %s", lease.strand_id, lease.label, lease.prog, error
        )
        detail = "".join(traceback.format_exception(error))[-ERROR_TEXT_LIMIT:]
        try:
            connection = self._connect()
            with connection.begin():
                connection.execute(
                    update(strand)
                    .where(strand.c.id == lease.strand_id, strand.c.lease_owner == self.owner)
                    .values(
                        last_error=detail,
                        lease_owner=None,
                        lease_until=None,
                        status=case(
                            (strand.c.tries >= self.settings.max_tries, StrandStatus.FAILED),
                            else_=strand.c.status,
                        ),
                    )
                )
        except DBAPIError:
            # The lease runs out on its own and the retry time is already written.
            log.exception("strand %s: could not record the failure", lease.strand_id)


def _json(value: Any) -> Any:
    """`value` itself, once it is known to fit in a JSON column."""
    json.dumps(value)
    return value

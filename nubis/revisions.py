"""Desired-state revisions: what a host should run changed, and who waits to hear it.

Every change of what a host should run raises the host's `desired_revision` here, in
the transaction that makes the change. An agent long-polls for a revision past the one
it has; the poll sleeps until a commit that raised its host's revision rings `BELL`:

- in this process, at once (the commit of any session rings it);
- from other processes on PostgreSQL, by `NOTIFY nubis_desired` with the hosts' ids,
  which a `Listener` in each API process turns into rings;
- from other processes on SQLite, which has no notifications, by a `Watcher` that looks
  at the revisions of the hosts being waited for, in one query, a few times a second
  (and only while a poll waits).

So an idle host costs the database one query per long poll, not one per look.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable
from uuid import UUID

from sqlalchemy import event, select, text, update
from sqlalchemy.orm import Session

from nubis.db import Database
from nubis.engine.doorbell import Listener
from nubis.models import Host

log = logging.getLogger(__name__)

CHANNEL = "nubis_desired"
EVERY_HOST = "*"
"""A notice's payload when every host may have changed (a whole location's)."""
_TOUCHED = "nubis.desired_touched"
MAX_PAYLOAD = 7900
"""A notice carries at most 8000 bytes; more hosts than fit are "every host"."""
WATCH_SECONDS = 0.1
"""How often the SQLite watcher looks, while a poll waits."""


def touch(session: Session, host_id: UUID) -> int:
    """Note that what `host_id` should run changed; its new desired revision."""
    host = session.get_one(Host, host_id, with_for_update=True)
    host.desired_revision += 1
    _touched(session).add(str(host_id))
    return host.desired_revision


def touch_location(session: Session, location_id: UUID) -> None:
    """Note that what every host of a location should run changed."""
    session.execute(
        update(Host)
        .where(Host.location_id == location_id)
        .values(desired_revision=Host.desired_revision + 1)
    )
    _touched(session).add(EVERY_HOST)


def _touched(session: Session) -> set[str]:
    touched: set[str] = session.info.setdefault(_TOUCHED, set())
    return touched


class Bell:
    """Wakes the long polls waiting on a host; safe to ring from any thread.

    A waiter names the ring it last saw (`seen`), so a ring between its look at the
    database and its wait is never missed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rings: dict[str, int] = {}
        self._everyone = 0
        self._total = 0
        self._waiting: dict[str, list[_Waiter]] = {}

    def seen(self, host_id: str) -> int:
        """How often `host_id` was rung (everyone's rings included)."""
        with self._lock:
            return self._rings.get(host_id, 0) + self._everyone

    def total(self) -> int:
        """How often anyone was rung."""
        with self._lock:
            return self._total

    def waiting(self) -> dict[str, int]:
        """The hosts a poll waits for now, each with the lowest revision its polls saw."""
        with self._lock:
            return {
                host_id: min(waiter.revision for waiter in waiters)
                for host_id, waiters in self._waiting.items()
            }

    def ring(self, host_ids: Iterable[str]) -> None:
        """Wake the polls of `host_ids` (EVERY_HOST among them: every poll)."""
        with self._lock:
            self._total += 1
            names = set(host_ids)
            if EVERY_HOST in names:
                self._everyone += 1
                woken = [w for waiters in self._waiting.values() for w in waiters]
                self._waiting.clear()
            else:
                woken = []
                for name in names:
                    self._rings[name] = self._rings.get(name, 0) + 1
                    woken += self._waiting.pop(name, [])
        for waiter in woken:
            waiter.loop.call_soon_threadsafe(waiter.settle)

    async def wait(self, host_id: str, seen: int, revision: int, timeout: float) -> bool:
        """Sleep until `host_id` is rung after `seen`, or `timeout` seconds; True if rung.
        `revision`: the host's desired revision as the poll last saw it."""
        waiter = _Waiter(asyncio.get_running_loop(), revision)
        with self._lock:
            if self._rings.get(host_id, 0) + self._everyone != seen:
                return True
            self._waiting.setdefault(host_id, []).append(waiter)
        try:
            await asyncio.wait_for(waiter.future, timeout)
        except TimeoutError:
            return False
        finally:
            with self._lock:
                waiters = self._waiting.get(host_id, [])
                if waiter in waiters:
                    waiters.remove(waiter)
                    if not waiters:
                        del self._waiting[host_id]
        return True


class _Waiter:
    """One sleeping poll: the loop it sleeps in, and the revision it saw."""

    def __init__(self, loop: asyncio.AbstractEventLoop, revision: int) -> None:
        self.loop = loop
        self.revision = revision
        self.future: asyncio.Future[None] = loop.create_future()

    def settle(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


BELL = Bell()
"""This process's bell."""


# Every session's: whichever process touches a host tells the others.
@event.listens_for(Session, "before_commit")
def _notify(session: Session) -> None:
    touched = session.info.get(_TOUCHED)
    if touched and session.get_bind().dialect.name == "postgresql":
        payload = EVERY_HOST if EVERY_HOST in touched else ",".join(sorted(touched))
        if len(payload) > MAX_PAYLOAD:
            payload = EVERY_HOST
        session.execute(
            text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload}
        )


@event.listens_for(Session, "after_commit")
def _ring(session: Session) -> None:
    touched = session.info.pop(_TOUCHED, None)
    if touched:
        BELL.ring(touched)


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_TOUCHED, None)


def _heard(bell: Bell, payload: str | None) -> None:
    bell.ring([EVERY_HOST] if payload is None else payload.split(","))


class Watcher(threading.Thread):
    """Rings the hosts whose revision another process raised, for stores that cannot
    say so themselves (SQLite): one query for all waiting hosts, a few times a second,
    none while no poll waits."""

    def __init__(self, db: Database, bell: Bell = BELL, interval: float = WATCH_SECONDS) -> None:
        super().__init__(name="revision-watcher", daemon=True)
        self._db = db
        self._bell = bell
        self._interval = interval
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        while not self._stop.wait(self._interval):
            waiting = self._bell.waiting()
            if not waiting:
                continue
            try:
                self.look(waiting)
            except Exception:  # the store may be busy or gone for a moment
                log.exception("cannot look at the hosts' revisions")

    def look(self, waiting: dict[str, int]) -> None:
        """Ring the hosts whose revision is past the one their polls saw."""
        with self._db.reading() as session:
            rows = session.execute(
                select(Host.id, Host.desired_revision).where(
                    Host.id.in_([UUID(host_id) for host_id in waiting])
                )
            ).all()
        raised = [str(key) for key, revision in rows if revision > waiting[str(key)]]
        if raised:
            self._bell.ring(raised)


def feeder(db: Database, bell: Bell = BELL) -> Listener | Watcher:
    """What tells this process of the revisions other processes raise: a Listener on
    PostgreSQL, a Watcher on SQLite (started by the caller)."""
    if db.is_postgres:
        return Listener(db.engine.url, CHANNEL, lambda payload: _heard(bell, payload))
    return Watcher(db, bell)

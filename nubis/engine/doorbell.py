"""Waking idle workers when there is new work, without polling.

A transaction that makes work due (a new strand, a semaphore, a retry, a child that
exits) calls `ring_on_commit(session)`. When it commits (any session's: the hooks are
on SQLAlchemy's Session class), every worker thread in this process wakes at once; on
PostgreSQL the commit also sends `NOTIFY nubis_strand`, which a `Listener` thread in
every worker process turns into a ring of its own bell.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from sqlalchemy import event, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

CHANNEL = "nubis_strand"
_RING = "nubis.ring"


class Doorbell:
    """A wake-up that cannot be missed: waiters name the last ring they saw."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._rings = 0

    def ring(self) -> None:
        with self._condition:
            self._rings += 1
            self._condition.notify_all()

    def rings(self) -> int:
        with self._condition:
            return self._rings

    def wait(self, seen: int, timeout: float) -> bool:
        """Sleep until a ring after `seen`, or `timeout` seconds; True if it rang."""
        with self._condition:
            return self._condition.wait_for(lambda: self._rings != seen, timeout)


DOORBELL = Doorbell()
"""This process's bell."""


def ring_on_commit(session: Session) -> None:
    session.info[_RING] = True


# Every session's: whichever process makes work due wakes the workers.
@event.listens_for(Session, "before_commit")
def _notify(session: Session) -> None:
    if session.info.get(_RING) and session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


@event.listens_for(Session, "after_commit")
def _ring(session: Session) -> None:
    if session.info.pop(_RING, False):
        DOORBELL.ring()


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_RING, None)


class Listener(threading.Thread):
    """Turns PostgreSQL notifications on `channel`, from any process, into calls of
    `heard(payload)`; `heard(None)` after each (re)connection, since notifications may
    have been missed while it was not listening."""

    def __init__(
        self,
        url: URL,
        channel: str = CHANNEL,
        heard: Callable[[str | None], None] | None = None,
        *,
        bell: Doorbell = DOORBELL,
    ) -> None:
        """Without `heard`, every notification rings `bell`."""
        super().__init__(name=f"listener-{channel}", daemon=True)
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._channel = channel
        self._heard = heard or (lambda _payload: bell.ring())
        self._stop = threading.Event()
        self.listening = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as connection:
                    connection.execute(f"LISTEN {self._channel}")
                    self.listening.set()
                    self._heard(None)
                    while not self._stop.is_set():
                        for notice in connection.notifies(timeout=0.5):
                            self._heard(notice.payload)
            except psycopg.Error as error:
                self.listening.clear()
                log.warning("lost the notification connection (%s); reconnecting", error)
                self._stop.wait(1.0)

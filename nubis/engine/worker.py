"""A worker: threads that take due strands and run their labels, a listener that
wakes them, and a watchdog that kills the process before a lease can run out.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext

from nubis.config import EngineSettings
from nubis.db import Database
from nubis.engine.dispatcher import Dispatcher
from nubis.engine.doorbell import DOORBELL, Doorbell, Listener

log = logging.getLogger(__name__)

EXIT_LEASE_OVERRUN = 75
PURGE_INTERVAL_SECONDS = 600.0


def _die(what: str) -> None:
    log.critical(
        "%s overran its lease; stopping this process so no other worker runs it at the same time",
        what,
    )
    sys.stderr.flush()
    os._exit(EXIT_LEASE_OVERRUN)


class Watchdog(threading.Thread):
    """Calls `on_overrun` (by default: ends the process) when a label passes its deadline.

    Killing the whole process is the only stop that also ends whatever the label was
    doing outside the database; a thread cannot be stopped from outside.
    """

    def __init__(self, on_overrun: Callable[[str], None] = _die, interval: float = 0.05) -> None:
        super().__init__(name="nubis-watchdog", daemon=True)
        self._on_overrun = on_overrun
        self._interval = interval
        self._lock = threading.Lock()
        self._deadlines: dict[int, tuple[float, str]] = {}
        self._stop = threading.Event()

    def arm(self, deadline: float, what: str) -> None:
        with self._lock:
            self._deadlines[threading.get_ident()] = (deadline, what)

    def disarm(self) -> None:
        with self._lock:
            self._deadlines.pop(threading.get_ident(), None)

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        while not self._stop.wait(self._interval):
            moment = time.monotonic()
            with self._lock:
                late = [what for deadline, what in self._deadlines.values() if moment > deadline]
            if late:
                self._on_overrun(late[0])


class Worker:
    """`threads` runner threads in this process, sharing one store."""

    def __init__(
        self,
        db: Database,
        settings: EngineSettings,
        *,
        threads: int = 1,
        bell: Doorbell = DOORBELL,
    ) -> None:
        self.db = db
        self.settings = settings
        self.bell = bell
        self._threads = [
            threading.Thread(target=self._loop, name=f"nubis-worker-{n}", daemon=True)
            for n in range(threads)
        ]
        self._stopping = threading.Event()
        self._watchdog = Watchdog()
        self._listener = Listener(db.engine.url, bell=bell) if db.is_postgres else None
        # SQLite has one writer at a time and every label writes, so threads of one
        # process take turns here, where handing over is immediate, rather than in
        # SQLite's busy handler, which sleeps up to 100 ms between attempts.
        self._turn: threading.Lock | nullcontext[None] = (
            nullcontext() if db.is_postgres else threading.Lock()
        )
        self._purge_lock = threading.Lock()
        self._next_purge = 0.0

    def start(self) -> None:
        if self._listener is not None:
            self._listener.start()
            self._listener.listening.wait(10)
        self._watchdog.start()
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Let every thread finish the label it runs, then return."""
        self._stopping.set()
        self.bell.ring()
        end = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))
        self._watchdog.stop()
        if self._listener is not None:
            self._listener.stop()

    def _loop(self) -> None:
        dispatcher = Dispatcher(self.db, self.settings)
        while not self._stopping.is_set():
            seen = self.bell.rings()
            try:
                with self._turn:
                    ran = self._run_next(dispatcher)
                if not ran:
                    self._purge(dispatcher)
                    self.bell.wait(seen, dispatcher.seconds_to_next())
            except Exception:
                # The store is away; leases run out by themselves, so just wait and retry.
                log.exception("worker loop failed; retrying in a second")
                dispatcher.close()
                self._stopping.wait(1.0)
        dispatcher.close()

    def _run_next(self, dispatcher: Dispatcher) -> bool:
        """Take a due strand and run its labels while this worker holds it; False if
        nothing was due."""
        lease = dispatcher.take()
        if lease is None:
            return False
        while lease is not None:
            if self._stopping.is_set():
                dispatcher.release(lease)
                break
            self._watchdog.arm(lease.deadline, f"label {lease.label} of {lease.prog}")
            try:
                lease = dispatcher.run(lease)
            finally:
                self._watchdog.disarm()
        return True

    def _purge(self, dispatcher: Dispatcher) -> None:
        with self._purge_lock:
            if time.monotonic() < self._next_purge:
                return
            self._next_purge = time.monotonic() + PURGE_INTERVAL_SECONDS
        removed = dispatcher.purge()
        if removed:
            log.info("removed %d exited strands past their retention time", removed)

"""Semaphores: signals that wake a strand at once and are never lost."""

from __future__ import annotations

from datetime import timedelta

from nubis.choices import StrandStatus
from nubis.clock import now
from nubis.db import Database
from nubis.engine import incr, start
from nubis.engine.dispatcher import Dispatcher
from tests.integration.engine import progs
from tests.integration.engine.helpers import drain, effects, strand


def test_incr_wakes_a_napping_strand_now(db: Database, dispatcher: Dispatcher) -> None:
    with db.transaction() as session:
        sid = start(session, progs.Sleeper)
    drain(dispatcher)

    with db.transaction() as session:
        assert incr(session, sid, "wake")
    assert strand(db, sid).schedule <= now()
    drain(dispatcher)

    assert strand(db, sid).exitval == "woken"


def test_incr_on_a_strand_that_exited_is_refused(db: Database, dispatcher: Dispatcher) -> None:
    with db.transaction() as session:
        sid = start(session, progs.Steps)
    drain(dispatcher)

    with db.transaction() as session:
        assert not incr(session, sid, "wake")


def test_a_signal_sent_while_the_label_runs_waits_for_the_next_run(
    db: Database, dispatcher: Dispatcher
) -> None:
    with db.transaction() as session:
        sid = start(session, progs.Nudged)
    lease = dispatcher.take()
    assert lease is not None

    # The label does not see the signal sent during it, and its nap must not
    # swallow the wake-up that came with the signal.
    assert dispatcher.run(lease) is None

    after_first = strand(db, sid)
    assert after_first.status == StrandStatus.ACTIVE
    assert after_first.schedule <= now(), "the nap swallowed the wake-up"
    drain(dispatcher)
    assert strand(db, sid).exitval == "woken"
    assert effects(db, sid) == 2


def test_a_nap_without_signal_keeps_its_full_length(db: Database, dispatcher: Dispatcher) -> None:
    with db.transaction() as session:
        sid = start(session, progs.Sleeper)
    lease = dispatcher.take()
    assert lease is not None
    dispatcher.run(lease)

    assert strand(db, sid).schedule > now() + timedelta(minutes=59)


def test_decr_consumes_only_the_signals_the_label_saw(db: Database, dispatcher: Dispatcher) -> None:
    with db.transaction() as session:
        sid = start(session, progs.Sleeper)
    drain(dispatcher)
    with db.transaction() as session:
        incr(session, sid, "wake")
        incr(session, sid, "wake")

    drain(dispatcher)

    assert strand(db, sid).exitval == "woken"
    assert effects(db, sid) == 2

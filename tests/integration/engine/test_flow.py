"""Every flow verb of a prog, stepped by hand on both stores."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from nubis.choices import StrandStatus
from nubis.clock import now
from nubis.db import Database
from nubis.engine import incr, start
from nubis.engine.dispatcher import Dispatcher
from nubis.models.engine import Strand
from tests.integration.engine import progs
from tests.integration.engine.helpers import drain, strand


def test_hop_runs_labels_in_order_and_keeps_the_frame(db: Database, dispatcher: Dispatcher) -> None:
    with db.transaction() as session:
        sid = start(session, progs.Steps)

    assert drain(dispatcher) == 3

    done = strand(db, sid)
    assert done.status == StrandStatus.EXITED
    assert done.exitval == ["start", "middle", "last"]
    assert done.lease_owner is None
    assert done.finished_at is not None


def test_nap_puts_the_strand_off_until_its_time(db: Database, dispatcher: Dispatcher) -> None:
    with db.transaction() as session:
        sid = start(session, progs.Sleeper)

    assert drain(dispatcher) == 1
    assert drain(dispatcher) == 0

    napping = strand(db, sid)
    assert napping.status == StrandStatus.ACTIVE
    assert napping.label == "start"
    assert napping.schedule > now() + timedelta(minutes=59)
    assert napping.lease_owner is None
    assert napping.tries == 0


def test_push_calls_a_sub_prog_and_pop_returns_to_the_caller(
    db: Database, dispatcher: Dispatcher
) -> None:
    with db.transaction() as session:
        sid = start(session, progs.Caller)

    drain(dispatcher)

    done = strand(db, sid)
    assert done.exitval == {"sum": 5, "mine": "kept"}
    assert len(done.stack) == 1


def test_pop_at_the_bottom_of_the_stack_exits(db: Database, dispatcher: Dispatcher) -> None:
    with db.transaction() as session:
        sid = start(session, progs.Adder, {"a": 20, "b": 22})

    drain(dispatcher)

    assert strand(db, sid).status == StrandStatus.EXITED
    assert strand(db, sid).exitval == 42


def test_bud_starts_children_and_reap_waits_for_all_of_them(
    db: Database, dispatcher: Dispatcher
) -> None:
    with db.transaction() as session:
        sid = start(session, progs.Parent, {"count": 3})

    drain(dispatcher)

    parent = strand(db, sid)
    assert parent.status == StrandStatus.EXITED
    assert parent.exitval == [0, 1, 4]
    with db.transaction() as session:
        children = session.scalars(select(Strand).where(Strand.parent_id == sid)).all()
    assert len(children) == 3
    assert all(c.status == StrandStatus.EXITED and c.reaped for c in children)


def test_reap_naps_while_a_child_runs_and_the_last_exit_wakes_the_parent(
    db: Database, dispatcher: Dispatcher
) -> None:
    with db.transaction() as session:
        sid = start(session, progs.Parent, {"count": 2, "wait": True})
    drain(dispatcher)
    waiting = strand(db, sid)
    assert waiting.label == "wait"
    assert waiting.schedule > now() + timedelta(minutes=59)

    with db.transaction() as session:
        children = session.scalars(select(Strand.id).where(Strand.parent_id == sid)).all()
        for child in children:
            incr(session, child, "go")
    drain(dispatcher)

    assert strand(db, sid).exitval == [0, 1]


def test_a_child_that_exits_before_its_siblings_is_reaped_once(
    db: Database, dispatcher: Dispatcher
) -> None:
    with db.transaction() as session:
        sid = start(session, progs.Parent, {"count": 2, "wait": True})
    drain(dispatcher)
    with db.transaction() as session:
        first, second = session.scalars(
            select(Strand.id).where(Strand.parent_id == sid).order_by(Strand.id)
        ).all()
        incr(session, first, "go")
    drain(dispatcher)
    assert strand(db, sid).stack[0]["data"]["reaped"] == [0]

    with db.transaction() as session:
        incr(session, second, "go")
    drain(dispatcher)

    assert strand(db, sid).exitval == [0, 1]


def test_a_started_strand_does_not_exist_until_its_transaction_commits(
    db: Database, dispatcher: Dispatcher
) -> None:
    with pytest.raises(RuntimeError), db.transaction() as session:
        start(session, progs.Steps)
        raise RuntimeError("the request was refused after all")

    assert drain(dispatcher) == 0

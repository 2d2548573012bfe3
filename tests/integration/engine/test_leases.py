"""A lease belongs to one worker: only it may commit a label or give the strand back."""

from __future__ import annotations

import time

from nubis.choices import StrandStatus
from nubis.config import EngineSettings
from nubis.db import Database
from nubis.engine import start
from nubis.engine.dispatcher import Dispatcher
from tests.integration.engine import progs
from tests.integration.engine.helpers import effects, run_held, strand


def test_a_worker_whose_lease_ran_out_cannot_commit_its_label(
    db: Database, settings: EngineSettings
) -> None:
    short = settings.model_copy(update={"lease_seconds": 0.3})
    slow, fast = Dispatcher(db, short), Dispatcher(db, short)
    with db.transaction() as session:
        sid = start(session, progs.Crashable, {"marker": "/dev/null"})
    stale = slow.take()
    assert stale is not None
    time.sleep(0.4)
    fresh = fast.take()
    assert fresh is not None and fresh.strand_id == sid

    assert slow.run(stale) is None

    assert effects(db, sid) == 0, "the stale worker's write must be rolled back"
    assert strand(db, sid).lease_owner == fast.owner
    run_held(fast, fresh)
    assert strand(db, sid).status == StrandStatus.EXITED
    assert effects(db, sid) == 1


def test_only_the_holder_can_release_a_lease(db: Database, settings: EngineSettings) -> None:
    holder, other = Dispatcher(db, settings), Dispatcher(db, settings)
    with db.transaction() as session:
        sid = start(session, progs.Steps)
    lease = holder.take()
    assert lease is not None

    other.release(lease)

    assert strand(db, sid).lease_owner == holder.owner
    assert other.take() is None
    holder.release(lease)
    assert strand(db, sid).lease_owner is None
    assert other.take() is not None


def test_a_held_strand_is_not_taken_twice(db: Database, settings: EngineSettings) -> None:
    with db.transaction() as session:
        start(session, progs.Steps)

    assert Dispatcher(db, settings).take() is not None
    assert Dispatcher(db, settings).take() is None

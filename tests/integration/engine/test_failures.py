"""A label that fails is retried with backoff, then stops visibly as `failed`."""

from __future__ import annotations

import time

from sqlalchemy import insert, update

from nubis.choices import StrandStatus
from nubis.clock import now
from nubis.config import EngineSettings
from nubis.db import Database
from nubis.engine import retry, start
from nubis.engine.dispatcher import Dispatcher
from nubis.models.engine import Strand
from tests.integration.engine import progs
from tests.integration.engine.helpers import drain, effects, strand


def _run_until_settled(dispatcher: Dispatcher, db: Database, sid: object, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        drain(dispatcher)
        if strand(db, sid).status != StrandStatus.ACTIVE:  # type: ignore[arg-type]
            return
        time.sleep(0.01)


def test_a_failing_label_rolls_back_its_writes_and_records_the_error(
    db: Database, settings: EngineSettings
) -> None:
    dispatcher = Dispatcher(
        db, settings.model_copy(update={"backoff_base_seconds": 60, "backoff_max_seconds": 600})
    )
    with db.transaction() as session:
        sid = start(session, progs.Failing)
    lease = dispatcher.take()
    assert lease is not None

    dispatcher.run(lease)

    failed_once = strand(db, sid)
    assert failed_once.status == StrandStatus.ACTIVE
    assert failed_once.tries == 1
    assert failed_once.last_error is not None
    assert "the switch is off" in failed_once.last_error
    assert failed_once.lease_owner is None
    assert failed_once.schedule > now(), "the retry must wait for its backoff"
    assert "dirty" not in failed_once.stack[0]["data"]
    assert effects(db, sid) == 0


def test_backoff_grows_with_each_try(db: Database) -> None:
    settings = EngineSettings(backoff_base_seconds=1, backoff_max_seconds=300, max_tries=10)
    dispatcher = Dispatcher(db, settings)
    with db.transaction() as session:
        sid = start(session, progs.Failing)
    delays = []
    for _ in range(4):
        with db.transaction() as session:  # make it due again without waiting
            session.execute(update(Strand).where(Strand.id == sid).values(schedule=now()))
        lease = dispatcher.take()
        assert lease is not None
        delays.append((lease.schedule - now()).total_seconds())
        dispatcher.run(lease)

    # 1, 2, 4, 8 s, each jittered by at most a quarter
    for attempt, delay in enumerate(delays):
        assert 0.75 * 2**attempt - 0.1 <= delay <= 1.25 * 2**attempt


def test_a_strand_that_keeps_failing_ends_failed_with_its_tries(
    db: Database, dispatcher: Dispatcher, settings: EngineSettings
) -> None:
    with db.transaction() as session:
        sid = start(session, progs.Failing)

    _run_until_settled(dispatcher, db, sid, 10)

    failed = strand(db, sid)
    assert failed.status == StrandStatus.FAILED
    assert failed.tries == settings.max_tries
    assert "the switch is off" in (failed.last_error or "")
    assert dispatcher.take() is None


def test_retry_gives_a_failed_strand_new_tries(db: Database, dispatcher: Dispatcher) -> None:
    with db.transaction() as session:
        sid = start(session, progs.Failing)
    _run_until_settled(dispatcher, db, sid, 10)
    with db.transaction() as session:
        session.execute(insert(progs.switch).values(name="on"))

    with db.transaction() as session:
        assert retry(session, sid)
    drain(dispatcher)

    done = strand(db, sid)
    assert done.status == StrandStatus.EXITED
    assert done.exitval is True
    assert done.last_error is None


def test_retry_refuses_a_strand_that_has_not_failed(db: Database) -> None:
    with db.transaction() as session:
        sid = start(session, progs.Sleeper)
    with db.transaction() as session:
        assert not retry(session, sid)


def test_a_label_that_ends_without_a_flow_verb_is_an_error(
    db: Database, dispatcher: Dispatcher
) -> None:
    with db.transaction() as session:
        sid = start(session, progs.Silent)
    lease = dispatcher.take()
    assert lease is not None
    dispatcher.run(lease)

    assert "returned without hop" in (strand(db, sid).last_error or "")


def test_a_hop_to_an_unknown_label_is_an_error(db: Database, dispatcher: Dispatcher) -> None:
    with db.transaction() as session:
        sid = start(session, progs.Lost)
    lease = dispatcher.take()
    assert lease is not None
    dispatcher.run(lease)

    assert "has no label 'nowhere'" in (strand(db, sid).last_error or "")


def test_a_worker_lost_in_the_same_label_too_often_fails_the_strand(
    db: Database, settings: EngineSettings
) -> None:
    short = settings.model_copy(update={"lease_seconds": 0.05})
    with db.transaction() as session:
        sid = start(session, progs.Steps)
    for _ in range(short.max_tries):
        # Each take is a worker that dies at once: nothing records why.
        end = time.monotonic() + 5
        while Dispatcher(db, short).take() is None:
            assert time.monotonic() < end
            time.sleep(0.01)

    end = time.monotonic() + 5
    while strand(db, sid).status == StrandStatus.ACTIVE:
        assert time.monotonic() < end
        Dispatcher(db, short).take()
        time.sleep(0.01)

    failed = strand(db, sid)
    assert failed.status == StrandStatus.FAILED
    assert failed.tries == short.max_tries
    assert "was lost before it finished" in (failed.last_error or "")

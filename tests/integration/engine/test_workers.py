"""Worker processes: crashes, exclusivity, wake-ups and the lease watchdog."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from uuid import UUID

import pytest
from sqlalchemy import func, insert, select

from nubis.choices import StrandStatus
from nubis.clock import now
from nubis.config import EngineSettings
from nubis.db import Database
from nubis.engine import incr, start
from nubis.engine.worker import EXIT_LEASE_OVERRUN, Worker
from nubis.ids import new_id
from nubis.models.engine import Strand
from tests.integration.engine import progs
from tests.integration.engine.conftest import SpawnWorker
from tests.integration.engine.helpers import effects, strand


def wait_for(condition: object, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


def _napping(db: Database, sid: UUID) -> bool:
    found = strand(db, sid)
    return found.lease_owner is None and found.schedule > now() + timedelta(minutes=59)


@pytest.mark.slow
def test_a_killed_worker_s_strand_is_finished_by_another_with_its_effect_once(
    db: Database, database_url: str, spawn_worker: SpawnWorker, tmp_path: Path
) -> None:
    marker = tmp_path / "in-label"
    with db.transaction() as session:
        sid = start(session, progs.Crashable, {"marker": str(marker)})

    doomed = spawn_worker(database_url, NUBIS_TEST_HANG="1", NUBIS_LEASE_SECONDS="3")
    wait_for(marker.exists, 30, "the first worker to enter the label")
    doomed.kill()
    doomed.wait(10)
    # The survivor takes over once the doomed worker's 3 s lease runs out. Its own lease
    # is long, so a loaded machine cannot make its watchdog end it before it finishes.
    spawn_worker(database_url, NUBIS_LEASE_SECONDS="60")
    wait_for(lambda: strand(db, sid).status != StrandStatus.ACTIVE, 30, "the strand to finish")

    assert marker.read_text() == str(doomed.pid)
    assert strand(db, sid).exitval == "finished"
    assert effects(db, sid) == 1


@pytest.mark.slow
def test_four_workers_never_run_two_labels_of_one_strand_at_once(
    postgres_url: str, spawn_worker: SpawnWorker
) -> None:
    db = Database.connect(postgres_url)
    progs.metadata.create_all(db.engine)
    count = 1000
    with db.transaction() as session:
        for _ in range(count):
            start(session, progs.Relay)

    for _ in range(4):
        spawn_worker(postgres_url, threads=2)

    def all_done() -> bool:
        with db.transaction() as session:
            left = session.scalar(select(func.count()).where(Strand.status != "exited"))
            return left == 0

    wait_for(all_done, 300, "every strand to exit")
    with db.transaction() as session:
        runs = session.execute(select(progs.label_run).order_by(progs.label_run.c.started)).all()
        exits = session.scalars(select(Strand.exitval)).all()
    db.dispose()

    per_strand: dict[UUID, list[tuple[str, float, float]]] = defaultdict(list)
    for run in runs:
        assert run.ended is not None, "a label run never ended"
        per_strand[run.strand_id].append((run.label, run.started, run.ended))
    assert len(per_strand) == count
    assert exits == ["d"] * count
    pids = {run.pid for run in runs}
    assert len(pids) == 4, "every worker process should have run labels"
    for sid, history in per_strand.items():
        assert [label for label, _, _ in history] == ["a", "b", "c", "d"], sid
        for (_, _, ended), (_, started, _) in pairwise(history):
            assert started >= ended, f"strand {sid} ran two labels at once"


@pytest.mark.slow
def test_a_semaphore_wakes_an_hour_long_nap_within_a_second(db: Database) -> None:
    settings = EngineSettings(idle_wait_seconds=60)
    worker = Worker(db, settings, threads=2)
    with db.transaction() as session:
        sid = start(session, progs.Sleeper)
    worker.start()
    try:
        wait_for(lambda: _napping(db, sid), 10, "the strand to nap")
        signalled = time.monotonic()
        with db.transaction() as session:
            incr(session, sid, "wake")
        wait_for(lambda: strand(db, sid).status == StrandStatus.EXITED, 1, "the wake-up")
        assert time.monotonic() - signalled < 1
    finally:
        worker.stop()


@pytest.mark.slow
def test_a_worker_process_is_woken_by_notifications_not_polling(
    postgres_url: str, spawn_worker: SpawnWorker
) -> None:
    db = Database.connect(postgres_url)
    progs.metadata.create_all(db.engine)
    spawn_worker(postgres_url, NUBIS_IDLE_WAIT_SECONDS="120")
    probe = new_id()
    with db.transaction() as session:
        start(session, progs.Steps, strand_id=probe)
    wait_for(lambda: strand(db, probe).status == StrandStatus.EXITED, 30, "the worker to start")

    with db.transaction() as session:
        sid = start(session, progs.Sleeper)
    wait_for(lambda: _napping(db, sid), 5, "a new strand to run")
    signalled = time.monotonic()
    with db.transaction() as session:
        incr(session, sid, "wake")
    wait_for(lambda: strand(db, sid).status == StrandStatus.EXITED, 1, "the wake-up")
    assert time.monotonic() - signalled < 1
    db.dispose()


@pytest.mark.slow
def test_a_worker_that_overruns_its_lease_kills_itself_before_the_lease_ends(
    db: Database, database_url: str, spawn_worker: SpawnWorker, tmp_path: Path
) -> None:
    marker = tmp_path / "in-label"
    with db.transaction() as session:
        sid = start(session, progs.Overrun, {"marker": str(marker), "seconds": 30})

    worker = spawn_worker(database_url, NUBIS_LEASE_SECONDS="2")
    wait_for(marker.exists, 30, "the label to start")
    entered = time.monotonic()
    code = worker.wait(10)
    died = time.monotonic()

    assert code == EXIT_LEASE_OVERRUN
    assert died - entered < 2
    overrun = strand(db, sid)
    assert overrun.lease_until is not None
    assert overrun.lease_until > now(), "the worker outlived its lease"
    assert overrun.status == StrandStatus.ACTIVE


def test_stopping_a_worker_leaves_no_strand_held(db: Database) -> None:
    with db.transaction() as session:
        for _ in range(50):
            start(session, progs.Steps)
    worker = Worker(db, EngineSettings(), threads=2)
    worker.start()
    time.sleep(0.05)
    worker.stop()

    with db.transaction() as session:
        held = session.scalar(select(func.count()).where(Strand.lease_owner.is_not(None)))
        session.execute(insert(progs.switch).values(name="checked"))
    assert held == 0

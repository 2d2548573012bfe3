"""Stepping the engine by hand, one label at a time, without threads."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import func, select

from nubis.db import Database
from nubis.engine.dispatcher import Dispatcher
from nubis.engine.lease import Lease
from nubis.models.engine import Strand
from tests.integration.engine import progs


def run_held(dispatcher: Dispatcher, lease: Lease | None, limit: int = 1000) -> int:
    """Run a held strand's labels for as long as the dispatcher keeps it; how many ran."""
    runs = 0
    while lease is not None:
        runs += 1
        assert runs <= limit, "the engine kept running; a prog loops"
        lease = dispatcher.run(lease)
    return runs


def drain(dispatcher: Dispatcher, limit: int = 1000) -> int:
    """Run due labels until none is due; how many ran."""
    runs = 0
    while (lease := dispatcher.take()) is not None:
        runs += run_held(dispatcher, lease, limit - runs)
    return runs


def strand(db: Database, strand_id: UUID) -> Strand:
    with db.transaction() as session:
        found = session.get(Strand, strand_id)
        assert found is not None
        return found


def effects(db: Database, strand_id: UUID) -> int:
    with db.transaction() as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(progs.effect)
                .where(progs.effect.c.strand_id == strand_id)
            )
            or 0
        )

"""The shipped migrations build exactly the schema the models describe, on both stores."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, Table, insert, select
from sqlalchemy.exc import IntegrityError, StatementError

import nubis.models
from nubis.db import Database
from nubis.db.base import Base, UTCDateTime
from nubis.db.migrate import current_revision, head_revision, upgrade
from nubis.ids import new_id


def _differences(db: Database, metadata: MetaData) -> list[Any]:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def _tables(db: Database) -> set[str]:
    return set(sa.inspect(db.engine).get_table_names())


def test_the_migrated_schema_matches_the_models(db: Database) -> None:
    assert {"strand", "semaphore"} <= set(Base.metadata.tables)
    assert _differences(db, Base.metadata) == []


def test_the_comparison_sees_a_table_the_migrations_lack(db: Database) -> None:
    extended = MetaData()
    for known in Base.metadata.tables.values():
        known.to_metadata(extended)
    Table("not_migrated", extended, Column("id", Integer, primary_key=True))
    differences = _differences(db, extended)
    assert [(kind, table.name) for kind, table in differences] == [("add_table", "not_migrated")]


def test_the_database_is_at_the_head_revision(db: Database) -> None:
    head = head_revision()
    assert head is not None
    assert current_revision(db) == head
    assert {"strand", "semaphore", "alembic_version"} <= _tables(db)


def test_upgrading_again_changes_nothing(db: Database) -> None:
    before = (current_revision(db), _tables(db))
    upgrade(db)
    assert (current_revision(db), _tables(db)) == before
    with db.engine.connect() as connection:
        versions = connection.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    assert [row[0] for row in versions] == [head_revision()]
    assert _differences(db, Base.metadata) == []


def test_upgrade_builds_the_schema_on_an_empty_database(tmp_path: Path) -> None:
    fresh = Database.connect(f"sqlite:///{tmp_path / 'fresh' / 'nubis.db'}")
    try:
        assert current_revision(fresh) is None
        upgrade(fresh)
        assert current_revision(fresh) == head_revision()
        assert _differences(fresh, Base.metadata) == []
    finally:
        fresh.dispose()


def test_the_store_enforces_foreign_keys(db: Database) -> None:
    with pytest.raises(IntegrityError), db.transaction() as session:
        session.execute(
            insert(nubis.models.Semaphore).values(
                id=new_id(), strand_id=new_id(), name="destroy", created_at=datetime.now(UTC)
            )
        )


def test_sqlite_connections_use_wal_and_foreign_keys(tmp_path: Path) -> None:
    sqlite = Database.connect(f"sqlite:///{tmp_path / 'nubis.db'}")
    try:
        with sqlite.engine.connect() as connection:
            foreign_keys = connection.exec_driver_sql("PRAGMA foreign_keys").scalar()
            journal_mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
        assert foreign_keys == 1
        assert journal_mode == "wal"
    finally:
        sqlite.dispose()


def test_every_sqlite_connection_of_the_test_store_is_configured(db: Database) -> None:
    if db.engine.dialect.name != "sqlite":
        assert db.engine.dialect.name == "postgresql"
        return
    # Two DBAPI connections held at once, so the pool cannot hand back the same one;
    # raw connections do not begin a transaction, so they do not wait on each other.
    connections = [db.engine.raw_connection(), db.engine.raw_connection()]
    try:
        for connection in connections:
            cursor = connection.cursor()
            assert cursor.execute("PRAGMA foreign_keys").fetchone() == (1,)
            assert cursor.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            cursor.close()
    finally:
        for connection in connections:
            connection.close()


times = Table(
    "test_utc_time",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("at", UTCDateTime()),
)


@pytest.fixture
def times_table(db: Database) -> Iterator[Database]:
    times.create(db.engine)
    try:
        yield db
    finally:
        times.drop(db.engine)


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 11, 22, 10, 30, 15, 123456, tzinfo=UTC),
        datetime(2026, 11, 22, 16, 0, 15, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2026, 3, 1, 1, 0, tzinfo=timezone(timedelta(hours=-8))),
    ],
    ids=["utc", "east", "west"],
)
def test_utc_datetime_reads_back_the_same_moment_in_utc(
    times_table: Database, moment: datetime
) -> None:
    with times_table.transaction() as session:
        session.execute(insert(times).values(id=1, at=moment))
    with times_table.transaction() as session:
        stored = session.scalar(select(times.c.at).where(times.c.id == 1))
    assert stored == moment
    assert stored is not None
    assert stored.utcoffset() == timedelta(0)
    assert stored.tzinfo == UTC


def test_utc_datetime_keeps_none(times_table: Database) -> None:
    with times_table.transaction() as session:
        session.execute(insert(times).values(id=1, at=None))
    with times_table.transaction() as session:
        assert session.scalar(select(times.c.at).where(times.c.id == 1)) is None


def test_utc_datetime_refuses_a_naive_time(times_table: Database) -> None:
    with pytest.raises(StatementError) as caught, times_table.transaction() as session:
        session.execute(insert(times).values(id=1, at=datetime(2026, 11, 22, 10, 30)))
    assert isinstance(caught.value.orig, ValueError)
    assert "naive datetime" in str(caught.value.orig)
    with times_table.transaction() as session:
        assert session.scalar(select(sa.func.count()).select_from(times)) == 0


def test_utc_times_compare_in_time_order(times_table: Database) -> None:
    base = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    # Later in wall-clock digits but earlier in time, and the other way round.
    early = (base - timedelta(minutes=1)).astimezone(timezone(timedelta(hours=9)))
    late = (base + timedelta(minutes=1)).astimezone(timezone(timedelta(hours=-9)))
    with times_table.transaction() as session:
        session.execute(insert(times), [{"id": 1, "at": early}, {"id": 2, "at": late}])
    with times_table.transaction() as session:
        before = session.scalars(select(times.c.id).where(times.c.at < base)).all()
        ordered = session.scalars(select(times.c.id).order_by(times.c.at)).all()
    assert before == [1]
    assert ordered == [1, 2]

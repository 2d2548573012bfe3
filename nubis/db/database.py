"""Connecting to the store: SQLite (embedded) or PostgreSQL (production)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from nubis.errors import InvalidInput


def normalize_url(url: str | URL) -> URL:
    """The URL with nubis's driver: psycopg 3 for PostgreSQL, pysqlite for SQLite."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return parsed.set(drivername="sqlite")
    raise InvalidInput(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


READ_ONLY = "nubis_read_only"


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" below open transactions, instead of pysqlite's
        # implicit deferred BEGIN: a deferred transaction that reads and then writes
        # can fail with SQLITE_BUSY without waiting, an immediate one waits its turn.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


@dataclass(frozen=True)
class Database:
    """One store: an engine and the sessions made from it."""

    engine: Engine
    sessions: sessionmaker[Session]

    @classmethod
    def connect(cls, url: str | URL, *, pool_size: int = 5) -> Database:
        parsed = normalize_url(url)
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(
                parsed,
                pool_size=pool_size,
                connect_args={"check_same_thread": False, "timeout": 30},
            )
            _configure_sqlite(engine)
        else:
            engine = sa.create_engine(
                parsed, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
            )
        return cls(engine=engine, sessions=sessionmaker(engine, expire_on_commit=False))

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits when the block ends and rolls back on error."""
        with self.sessions.begin() as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for reads only. On SQLite it does not take the write lock, so it
        neither waits for nor delays writers."""
        connection = self.engine.connect().execution_options(**{READ_ONLY: True})
        with connection, self.sessions(bind=connection) as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()

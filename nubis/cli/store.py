"""The database, for the commands that use it directly (`nubis admin …`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from nubis.config import Settings
from nubis.db import Database


@contextmanager
def database() -> Iterator[Database]:
    db = Database.connect(Settings().database_url)
    try:
        yield db
    finally:
        db.dispose()

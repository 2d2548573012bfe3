"""The store: SQLAlchemy engine and sessions, the declarative base, migrations."""

from nubis.db.base import Base
from nubis.db.database import Database

__all__ = ["Base", "Database"]

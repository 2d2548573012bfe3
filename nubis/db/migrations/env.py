"""Alembic environment: runs on the connection nubis hands it."""

from alembic import context

import nubis.models  # noqa: F401  (registers every table on the metadata)
from nubis.db.base import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()

"""An index of allocations by anti-affinity group, for placement.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHERE = sa.text("affinity_group IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_allocation_group",
        "allocation",
        ["affinity_group"],
        postgresql_where=WHERE,
        sqlite_where=WHERE,
    )


def downgrade() -> None:
    op.drop_index("ix_allocation_group", table_name="allocation")

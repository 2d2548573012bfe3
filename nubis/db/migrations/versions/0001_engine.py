"""The engine: strands and semaphores.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import nubis.db.base

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "strand",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("parent_id", sa.Uuid(), nullable=True),
        sa.Column("prog", sa.String(length=200), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("stack", nubis.db.base.JSONValue, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("schedule", nubis.db.base.UTCDateTime(), nullable=False),
        sa.Column("lease_until", nubis.db.base.UTCDateTime(), nullable=True),
        sa.Column("lease_owner", sa.Uuid(), nullable=True),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("exitval", nubis.db.base.JSONValue, nullable=True),
        sa.Column("reaped", sa.Boolean(), nullable=False),
        sa.Column("created_at", nubis.db.base.UTCDateTime(), nullable=False),
        sa.Column("finished_at", nubis.db.base.UTCDateTime(), nullable=True),
        sa.CheckConstraint("status IN ('active', 'failed', 'exited')", name=op.f("ck_strand_status")),
        sa.CheckConstraint("tries >= 0", name=op.f("ck_strand_tries")),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["strand.id"], name=op.f("fk_strand_parent_id_strand"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_strand")),
    )
    op.create_index(op.f("ix_strand_parent_id"), "strand", ["parent_id"])
    op.create_index(
        "ix_strand_due",
        "strand",
        ["schedule"],
        postgresql_where=sa.text("status = 'active'"),
        sqlite_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "semaphore",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("strand_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", nubis.db.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["strand_id"], ["strand.id"], name=op.f("fk_semaphore_strand_id_strand"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_semaphore")),
    )
    op.create_index(op.f("ix_semaphore_strand_id"), "semaphore", ["strand_id"])


def downgrade() -> None:
    op.drop_table("semaphore")
    op.drop_table("strand")

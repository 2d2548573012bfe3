"""VNIs held after their network is deleted, until every host that may still bridge
them has converged past the deletion.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import nubis.db.base

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "vni_hold",
        sa.Column("location_id", sa.Uuid(), nullable=False),
        sa.Column("vni", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.Uuid(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", nubis.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["host_id"], ["host.id"], name=op.f("fk_vni_hold_host_id_host"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["location_id"],
            ["location.id"],
            name=op.f("fk_vni_hold_location_id_location"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("location_id", "vni", "host_id", name=op.f("pk_vni_hold")),
    )
    with op.batch_alter_table("vni_hold", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_vni_hold_host_id"), ["host_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("vni_hold", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vni_hold_host_id"))
    op.drop_table("vni_hold")

"""Host failure: what each agent sees of its peers, the control plane's own hearing,
VMs that opt out of failover or wait for capacity, and each VM's event log.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import nubis.db.base

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("host", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "peer_silence",
                nubis.db.base.JSONValue,
                nullable=False,
                server_default=sa.text("'{}'"),
            )
        )
        batch_op.add_column(
            sa.Column(
                "peers_reported_at", nubis.db.base.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column("fenced", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("vm", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ha", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column("waiting", sa.Text(), nullable=True))

    op.create_table(
        "plane",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("receiving_since", nubis.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_status_at", nubis.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plane")),
    )
    # The one row; every status updates it, none has to make it.
    op.execute("INSERT INTO plane (id) VALUES (1)")

    op.create_table(
        "vm_event",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("vm_id", sa.Uuid(), nullable=False),
        sa.Column("at", nubis.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["vm_id"], ["vm.id"], name=op.f("fk_vm_event_vm_id_vm"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vm_event")),
    )
    with op.batch_alter_table("vm_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_vm_event_vm_id"), ["vm_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("vm_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vm_event_vm_id"))
    op.drop_table("vm_event")
    op.drop_table("plane")
    with op.batch_alter_table("vm", schema=None) as batch_op:
        batch_op.drop_column("waiting")
        batch_op.drop_column("ha")
    with op.batch_alter_table("host", schema=None) as batch_op:
        batch_op.drop_column("fenced")
        batch_op.drop_column("peers_reported_at")
        batch_op.drop_column("peer_silence")

"""One-time tickets to a VM's console.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import nubis.db.base

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_ticket",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("token_id", sa.Uuid(), nullable=False),
        sa.Column("vm_id", sa.Uuid(), nullable=False),
        sa.Column("host_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("expires_at", nubis.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", nubis.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", nubis.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["token_id"],
            ["api_token.id"],
            name=op.f("fk_console_ticket_token_id_api_token"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["vm_id"],
            ["vm.id"],
            name=op.f("fk_console_ticket_vm_id_vm"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["host_id"],
            ["host.id"],
            name=op.f("fk_console_ticket_host_id_host"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_ticket")),
        sa.UniqueConstraint("secret_sha256", name=op.f("uq_console_ticket_secret_sha256")),
    )
    op.create_index(op.f("ix_console_ticket_vm_id"), "console_ticket", ["vm_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_console_ticket_vm_id"), table_name="console_ticket")
    op.drop_table("console_ticket")

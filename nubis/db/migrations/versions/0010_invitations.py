"""Invitations to projects; stored idempotent answers keyed by token and sealed.

The answers stored before this revision hold secrets (new tokens', TOTP seeds) in the
clear, keyed by a digest of the Authorization header: they are deleted, not kept. A
client retrying across the upgrade makes its request anew.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import nubis.db.base

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DELETE FROM idempotent_request")
    with op.batch_alter_table("idempotent_request", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_idempotent_request_credential_key"), type_="unique")
        batch_op.drop_column("credential")
        batch_op.add_column(sa.Column("token_id", sa.Uuid(), nullable=False))
        batch_op.create_foreign_key(
            batch_op.f("fk_idempotent_request_token_id_api_token"),
            "api_token",
            ["token_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_idempotent_request_token_id_key"), ["token_id", "key"]
        )

    op.create_table(
        "invitation",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("invited_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", nubis.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", nubis.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "role IN ('viewer', 'member', 'admin', 'owner')", name=op.f("ck_invitation_role")
        ),
        sa.ForeignKeyConstraint(
            ["invited_by"],
            ["user_account.id"],
            name=op.f("fk_invitation_invited_by_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.id"],
            name=op.f("fk_invitation_project_id_project"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitation")),
        sa.UniqueConstraint("project_id", "email", name=op.f("uq_invitation_project_id_email")),
    )
    with op.batch_alter_table("invitation", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_invitation_email"), ["email"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("invitation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invitation_email"))
    op.drop_table("invitation")

    # The answers now stored are sealed and keyed by token; the old schema can use none.
    op.execute("DELETE FROM idempotent_request")
    with op.batch_alter_table("idempotent_request", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_idempotent_request_token_id_key"), type_="unique")
        batch_op.drop_constraint(
            batch_op.f("fk_idempotent_request_token_id_api_token"), type_="foreignkey"
        )
        batch_op.drop_column("token_id")
        batch_op.add_column(sa.Column("credential", sa.String(length=64), nullable=False))
        batch_op.create_unique_constraint(
            batch_op.f("uq_idempotent_request_credential_key"), ["credential", "key"]
        )

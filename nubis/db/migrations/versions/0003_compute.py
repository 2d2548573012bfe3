"""Compute: locations, hosts, allocations, join tokens, host events.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import nubis.db.base


revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "location",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=43), nullable=False),
        sa.Column("flooding", sa.String(length=16), nullable=False),
        sa.Column("created_at", nubis.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "flooding IN ('multicast', 'unicast')", name=op.f("ck_location_flooding")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_location")),
        sa.UniqueConstraint("name", name=op.f("uq_location_name")),
    )
    op.create_table(
        "host",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("location_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("credential_sha256", sa.String(length=64), nullable=False),
        sa.Column("arch", sa.String(length=16), nullable=False),
        sa.Column("acceleration", sa.String(length=8), nullable=False),
        sa.Column("underlay_address", sa.String(length=45), nullable=False),
        sa.Column("cores", sa.Integer(), nullable=False),
        sa.Column("threads", sa.Integer(), nullable=False),
        sa.Column("memory_bytes", sa.BigInteger(), nullable=False),
        sa.Column("hugepages", sa.Integer(), nullable=False),
        sa.Column("disk_bytes", sa.BigInteger(), nullable=False),
        sa.Column("cpu_ratio", sa.Double(), nullable=False),
        sa.Column("memory_ratio", sa.Double(), nullable=False),
        sa.Column("used_cores", sa.Integer(), nullable=False),
        sa.Column("used_memory_bytes", sa.BigInteger(), nullable=False),
        sa.Column("used_hugepages", sa.Integer(), nullable=False),
        sa.Column("used_disk_bytes", sa.BigInteger(), nullable=False),
        sa.Column("allocation_state", sa.String(length=16), nullable=False),
        sa.Column("health", sa.String(length=16), nullable=False),
        sa.Column("last_heartbeat_at", nubis.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("monitor_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", nubis.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "allocation_state IN ('accepting', 'draining', 'maintenance')",
            name=op.f("ck_host_allocation_state"),
        ),
        sa.CheckConstraint(
            "health IN ('online', 'unreachable', 'dead')", name=op.f("ck_host_health")
        ),
        sa.CheckConstraint("cores > 0 AND threads >= cores", name=op.f("ck_host_cores")),
        sa.CheckConstraint("cpu_ratio > 0 AND memory_ratio > 0", name=op.f("ck_host_ratios")),
        sa.CheckConstraint(
            "memory_bytes > 0 AND disk_bytes >= 0 AND hugepages >= 0", name=op.f("ck_host_size")
        ),
        sa.CheckConstraint(
            "used_cores >= 0 AND used_cores <= cores * cpu_ratio", name=op.f("ck_host_used_cores")
        ),
        sa.CheckConstraint(
            "used_disk_bytes >= 0 AND used_disk_bytes <= disk_bytes", name=op.f("ck_host_used_disk")
        ),
        sa.CheckConstraint(
            "used_hugepages >= 0 AND used_hugepages <= hugepages",
            name=op.f("ck_host_used_hugepages"),
        ),
        sa.CheckConstraint(
            "used_memory_bytes >= 0 AND used_memory_bytes <= memory_bytes * memory_ratio",
            name=op.f("ck_host_used_memory"),
        ),
        sa.ForeignKeyConstraint(
            ["location_id"], ["location.id"], name=op.f("fk_host_location_id_location")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_host")),
        sa.UniqueConstraint("credential_sha256", name=op.f("uq_host_credential_sha256")),
        sa.UniqueConstraint("name", name=op.f("uq_host_name")),
    )
    with op.batch_alter_table("host", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_host_location_id"), ["location_id"], unique=False)

    op.create_table(
        "join_token",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("location_id", sa.Uuid(), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("expires_at", nubis.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", nubis.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["location_id"],
            ["location.id"],
            name=op.f("fk_join_token_location_id_location"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_join_token")),
        sa.UniqueConstraint("secret_sha256", name=op.f("uq_join_token_secret_sha256")),
    )
    op.create_table(
        "allocation",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("host_id", sa.Uuid(), nullable=False),
        sa.Column("consumer", sa.String(length=64), nullable=False),
        sa.Column("cores", sa.Integer(), nullable=False),
        sa.Column("memory_bytes", sa.BigInteger(), nullable=False),
        sa.Column("hugepages", sa.Integer(), nullable=False),
        sa.Column("disk_bytes", sa.BigInteger(), nullable=False),
        sa.Column("affinity_group", sa.String(length=64), nullable=True),
        sa.Column("created_at", nubis.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "cores > 0 AND memory_bytes >= 0 AND hugepages >= 0 AND disk_bytes >= 0",
            name=op.f("ck_allocation_sizes"),
        ),
        sa.ForeignKeyConstraint(["host_id"], ["host.id"], name=op.f("fk_allocation_host_id_host")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allocation")),
        sa.UniqueConstraint("consumer", name=op.f("uq_allocation_consumer")),
    )
    with op.batch_alter_table("allocation", schema=None) as batch_op:
        batch_op.create_index(
            "ix_allocation_host_group", ["host_id", "affinity_group"], unique=False
        )

    op.create_table(
        "host_event",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("host_id", sa.Uuid(), nullable=False),
        sa.Column("at", nubis.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["host_id"], ["host.id"], name=op.f("fk_host_event_host_id_host"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_host_event")),
    )
    with op.batch_alter_table("host_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_host_event_host_id"), ["host_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("host_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_host_event_host_id"))

    op.drop_table("host_event")
    with op.batch_alter_table("allocation", schema=None) as batch_op:
        batch_op.drop_index("ix_allocation_host_group")

    op.drop_table("allocation")
    op.drop_table("join_token")
    with op.batch_alter_table("host", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_host_location_id"))

    op.drop_table("host")
    op.drop_table("location")

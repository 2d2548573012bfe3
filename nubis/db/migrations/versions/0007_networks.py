"""Project networks: the network table, the /64s they take, NICs in them, firewall rules.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import nubis.db.base

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "network",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("location_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("ipam", sa.String(length=8), nullable=False),
        sa.Column("vni", sa.Integer(), nullable=False),
        sa.Column("created_at", nubis.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("ipam IN ('none', 'manual', 'auto')", name=op.f("ck_network_ipam")),
        sa.CheckConstraint("vni >= 1 AND vni <= 16777215", name=op.f("ck_network_vni")),
        sa.ForeignKeyConstraint(
            ["location_id"], ["location.id"], name=op.f("fk_network_location_id_location")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.id"],
            name=op.f("fk_network_project_id_project"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_network")),
        sa.UniqueConstraint("location_id", "vni", name="uq_network_location_vni"),
        sa.UniqueConstraint("project_id", "name", name="uq_network_project_name"),
    )
    with op.batch_alter_table("network", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_network_location_id"), ["location_id"], unique=False)

    op.create_table(
        "firewall_rule",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("network_id", sa.Uuid(), nullable=True),
        sa.Column("vm_id", sa.Uuid(), nullable=True),
        sa.Column("protocol", sa.String(length=8), nullable=False),
        sa.Column("port_min", sa.Integer(), nullable=True),
        sa.Column("port_max", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=43), nullable=False),
        sa.Column("created_at", nubis.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(network_id IS NULL) <> (vm_id IS NULL)", name=op.f("ck_firewall_rule_target")
        ),
        sa.CheckConstraint(
            "protocol IN ('tcp', 'udp', 'icmp', 'any')", name=op.f("ck_firewall_rule_protocol")
        ),
        sa.CheckConstraint(
            "(port_min IS NULL AND port_max IS NULL) OR (protocol IN ('tcp', 'udp') "
            "AND port_min >= 1 AND port_min <= port_max AND port_max <= 65535)",
            name=op.f("ck_firewall_rule_ports"),
        ),
        sa.ForeignKeyConstraint(
            ["network_id"],
            ["network.id"],
            name=op.f("fk_firewall_rule_network_id_network"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.id"],
            name=op.f("fk_firewall_rule_project_id_project"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["vm_id"], ["vm.id"], name=op.f("fk_firewall_rule_vm_id_vm"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firewall_rule")),
    )
    with op.batch_alter_table("firewall_rule", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_firewall_rule_network_id"), ["network_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_firewall_rule_project_id"), ["project_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_firewall_rule_vm_id"), ["vm_id"], unique=False)

    with op.batch_alter_table("subnet", schema=None) as batch_op:
        batch_op.add_column(sa.Column("network_id", sa.Uuid(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_subnet_network_id"), ["network_id"])
        batch_op.create_foreign_key(
            batch_op.f("fk_subnet_network_id_network"),
            "network",
            ["network_id"],
            ["id"],
            ondelete="CASCADE",
        )

    with op.batch_alter_table("nic", schema=None) as batch_op:
        batch_op.add_column(sa.Column("network_id", sa.Uuid(), nullable=True))
        batch_op.create_index(batch_op.f("ix_nic_network_id"), ["network_id"], unique=False)
        batch_op.create_unique_constraint("uq_nic_vm_network", ["vm_id", "network_id"])
        batch_op.create_foreign_key(
            batch_op.f("fk_nic_network_id_network"), "network", ["network_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("nic", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_nic_network_id_network"), type_="foreignkey")
        batch_op.drop_constraint("uq_nic_vm_network", type_="unique")
        batch_op.drop_index(batch_op.f("ix_nic_network_id"))
        batch_op.drop_column("network_id")

    with op.batch_alter_table("subnet", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_subnet_network_id_network"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("uq_subnet_network_id"), type_="unique")
        batch_op.drop_column("network_id")

    with op.batch_alter_table("firewall_rule", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_firewall_rule_vm_id"))
        batch_op.drop_index(batch_op.f("ix_firewall_rule_project_id"))
        batch_op.drop_index(batch_op.f("ix_firewall_rule_network_id"))
    op.drop_table("firewall_rule")

    with op.batch_alter_table("network", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_network_location_id"))
    op.drop_table("network")

"""Project networks (VXLAN segments with an IPAM mode) and the firewall rules that open
ports of their NICs to the world."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from nubis.clock import now
from nubis.db.base import Base
from nubis.ids import new_id


class Network(Base):
    """A layer-2 segment of a project in one location: one VNI, and with IPAM `manual`
    or `auto` a /64 of the location's prefix (its `Subnet` row)."""

    __tablename__ = "network"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    project_id: Mapped[UUID] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    location_id: Mapped[UUID] = mapped_column(ForeignKey("location.id"), index=True)
    name: Mapped[str] = mapped_column(String(32))
    ipam: Mapped[str] = mapped_column(String(8))
    vni: Mapped[int]
    """The VXLAN network identifier, unique in the location."""
    created_at: Mapped[datetime] = mapped_column(default=now)

    __table_args__ = (
        UniqueConstraint("project_id", "name", name="uq_network_project_name"),
        UniqueConstraint("location_id", "vni", name="uq_network_location_vni"),
        CheckConstraint("ipam IN ('none', 'manual', 'auto')", name="ipam"),
        CheckConstraint("vni >= 1 AND vni <= 16777215", name="vni"),
    )


class VniHold(Base):
    """A deleted network's VNI, kept from every new network of its location until `host`
    has converged to `revision` or past it: until then the host may still bridge the old
    network's taps to that VNI (and its multicast group), and a new network with it would
    join them."""

    __tablename__ = "vni_hold"

    location_id: Mapped[UUID] = mapped_column(
        ForeignKey("location.id", ondelete="CASCADE"), primary_key=True
    )
    vni: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[UUID] = mapped_column(
        ForeignKey("host.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    revision: Mapped[int]
    """The host's desired revision when the network was deleted."""
    created_at: Mapped[datetime] = mapped_column(default=now)


class FirewallRule(Base):
    """Lets traffic from `source` reach a port of one VM's project NICs, or of every NIC
    in one network. Exactly one of `vm_id` and `network_id` is set."""

    __tablename__ = "firewall_rule"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    project_id: Mapped[UUID] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    network_id: Mapped[UUID | None] = mapped_column(
        ForeignKey("network.id", ondelete="CASCADE"), index=True
    )
    vm_id: Mapped[UUID | None] = mapped_column(ForeignKey("vm.id", ondelete="CASCADE"), index=True)
    protocol: Mapped[str] = mapped_column(String(8))
    port_min: Mapped[int | None]
    port_max: Mapped[int | None]
    source: Mapped[str] = mapped_column(String(43))
    """A normalized IPv6 network, e.g. `::/0`."""
    created_at: Mapped[datetime] = mapped_column(default=now)

    __table_args__ = (
        CheckConstraint("(network_id IS NULL) <> (vm_id IS NULL)", name="target"),
        CheckConstraint("protocol IN ('tcp', 'udp', 'icmp', 'any')", name="protocol"),
        CheckConstraint(
            "(port_min IS NULL AND port_max IS NULL) OR (protocol IN ('tcp', 'udp') "
            "AND port_min >= 1 AND port_min <= port_max AND port_max <= 65535)",
            name="ports",
        ),
    )

"""Compute: locations, the hosts in them, what is placed on each host, and how hosts join.

A host's `used_*` counters are the sum of its allocations. They change only together
with an allocation row, in one transaction, and CHECK constraints keep them within
0 and the host's capacity (times its overcommit ratio), whatever the code does.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, Text, false, text
from sqlalchemy.orm import Mapped, mapped_column

from nubis.choices import Flooding
from nubis.clock import now
from nubis.db.base import Base
from nubis.ids import new_id


class AllocationState(StrEnum):
    ACCEPTING = "accepting"
    DRAINING = "draining"
    """Keeps its VMs, takes no new ones."""
    MAINTENANCE = "maintenance"
    """Taken out of service by an operator; takes no new VMs."""


class Health(StrEnum):
    ONLINE = "online"
    UNREACHABLE = "unreachable"
    """No heartbeat for a while: an alert, not yet a failure."""
    DEAD = "dead"


class Location(Base):
    __tablename__ = "location"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(43))
    """The IPv6 prefix networks get their /64s from, e.g. 2001:db8:1::/48."""
    flooding: Mapped[str] = mapped_column(String(16), default=Flooding.MULTICAST)
    created_at: Mapped[datetime] = mapped_column(default=now)

    __table_args__ = (CheckConstraint("flooding IN ('multicast', 'unicast')", name="flooding"),)


class Host(Base):
    __tablename__ = "host"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    location_id: Mapped[UUID] = mapped_column(ForeignKey("location.id"), index=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    credential_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    arch: Mapped[str] = mapped_column(String(16))
    acceleration: Mapped[str] = mapped_column(String(8))
    underlay_address: Mapped[str] = mapped_column(String(45))
    cores: Mapped[int]
    threads: Mapped[int]
    memory_bytes: Mapped[int] = mapped_column(BigInteger)
    hugepages: Mapped[int] = mapped_column(default=0)
    """1 GiB huge pages set aside for VMs; a host with any gives VMs memory only from them."""
    disk_bytes: Mapped[int] = mapped_column(BigInteger)
    cpu_ratio: Mapped[float] = mapped_column(default=1.0)
    memory_ratio: Mapped[float] = mapped_column(default=1.0)
    used_cores: Mapped[int] = mapped_column(default=0)
    used_memory_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    used_hugepages: Mapped[int] = mapped_column(default=0)
    used_disk_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    allocation_state: Mapped[str] = mapped_column(String(16), default=AllocationState.ACCEPTING)
    health: Mapped[str] = mapped_column(String(16), default=Health.ONLINE)
    last_heartbeat_at: Mapped[datetime] = mapped_column(default=now)
    monitor_id: Mapped[UUID | None]
    """The strand that watches this host's heartbeats."""
    desired_revision: Mapped[int] = mapped_column(default=0, server_default="0")
    """Grows with every change of what the host should run."""
    observed_revision: Mapped[int] = mapped_column(default=0, server_default="0")
    """The desired revision the agent last reported it converged to."""
    peer_silence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """What the agent last reported of the peers it watches: seconds since each (by
    public host id) last answered a probe."""
    peers_reported_at: Mapped[datetime | None]
    """When the control plane received `peer_silence`."""
    fenced: Mapped[bool] = mapped_column(default=False, server_default=false())
    """Whether the agent's last report said it had fenced itself."""
    created_at: Mapped[datetime] = mapped_column(default=now)

    __table_args__ = (
        CheckConstraint(
            "allocation_state IN ('accepting', 'draining', 'maintenance')", name="allocation_state"
        ),
        CheckConstraint("health IN ('online', 'unreachable', 'dead')", name="health"),
        CheckConstraint("cores > 0 AND threads >= cores", name="cores"),
        CheckConstraint("memory_bytes > 0 AND disk_bytes >= 0 AND hugepages >= 0", name="size"),
        CheckConstraint("cpu_ratio > 0 AND memory_ratio > 0", name="ratios"),
        CheckConstraint("used_cores >= 0 AND used_cores <= cores * cpu_ratio", name="used_cores"),
        CheckConstraint(
            "used_memory_bytes >= 0 AND used_memory_bytes <= memory_bytes * memory_ratio",
            name="used_memory",
        ),
        CheckConstraint(
            "used_hugepages >= 0 AND used_hugepages <= hugepages", name="used_hugepages"
        ),
        CheckConstraint("used_disk_bytes >= 0 AND used_disk_bytes <= disk_bytes", name="used_disk"),
    )


class Allocation(Base):
    """What one consumer (a VM) holds on one host. Deleting it is the give-back."""

    __tablename__ = "allocation"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    host_id: Mapped[UUID] = mapped_column(ForeignKey("host.id"))
    consumer: Mapped[str] = mapped_column(String(64), unique=True)
    """Who holds it, e.g. a VM's id; one allocation per consumer."""
    cores: Mapped[int]
    memory_bytes: Mapped[int] = mapped_column(BigInteger)
    """Ordinary memory taken; 0 on a host that uses huge pages."""
    hugepages: Mapped[int]
    disk_bytes: Mapped[int] = mapped_column(BigInteger)
    affinity_group: Mapped[str | None] = mapped_column(String(64))
    """Anti-affinity group: no two allocations of a group share a host."""
    created_at: Mapped[datetime] = mapped_column(default=now)

    __table_args__ = (
        Index("ix_allocation_host_group", "host_id", "affinity_group"),
        # Placement asks which hosts hold a group; most allocations are in none.
        Index(
            "ix_allocation_group",
            "affinity_group",
            postgresql_where=text("affinity_group IS NOT NULL"),
            sqlite_where=text("affinity_group IS NOT NULL"),
        ),
        CheckConstraint(
            "cores > 0 AND memory_bytes >= 0 AND hugepages >= 0 AND disk_bytes >= 0",
            name="sizes",
        ),
    )


class JoinToken(Base):
    """A one-time secret that lets one new host join a location."""

    __tablename__ = "join_token"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    location_id: Mapped[UUID] = mapped_column(ForeignKey("location.id", ondelete="CASCADE"))
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    used_by: Mapped[UUID | None]
    """The host that joined with it."""
    created_at: Mapped[datetime] = mapped_column(default=now)


class HostEvent(Base):
    """The host's event log: joins, health and allocation-state changes, operator acts."""

    __tablename__ = "host_event"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    host_id: Mapped[UUID] = mapped_column(ForeignKey("host.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=now)
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text)


class Plane(Base):
    """The control plane's own health, one row: since when it has been hearing from
    hosts without a gap. No host is declared dead until it has heard for a whole dead
    window, so an outage of the API (or of the database) is never taken for the hosts'."""

    __tablename__ = "plane"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    receiving_since: Mapped[datetime | None]
    """The first status after the last gap."""
    last_status_at: Mapped[datetime | None]
    """The last status from any host (written at most about once a second)."""

"""Virtual machines and their NICs."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    String,
    Text,
    UniqueConstraint,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from nubis.clock import now
from nubis.db.base import Base
from nubis.ids import new_id


class VmLabel(StrEnum):
    """The labels of a VM's prog (`nubis/progs/vm.py`, a method each), which `Vm.label`
    holds: the one place they are named."""

    WAIT_UP = "wait_up"
    """Placed; its host is to start it."""
    SETTLED = "settled"
    """Its host runs it (or keeps it stopped); the owner's wishes are carried out."""
    EVACUATE = "evacuate"
    """It has no host, and is being placed on one (or waits for capacity)."""
    STRANDED = "stranded"
    """`--no-ha`, stopped with its dead host until started again."""
    LEAVE = "leave"
    """Its host, which lives, is told to stop it so it can move."""
    WAIT_LEFT = "wait_left"
    """Waiting for its host to have stopped it."""
    DESTROY = "destroy"
    """Being deleted: its host is told to remove it."""
    WAIT_GONE = "wait_gone"
    """Waiting for its host to have removed it; then it gives back all it held."""


ON_HOST = frozenset({VmLabel.WAIT_UP, VmLabel.SETTLED})
"""The labels of a VM its host has in its desired state (and runs, or keeps stopped).
An allow-list: a label not named here (a new one too) keeps the VM off every host."""
GONE = frozenset({VmLabel.DESTROY, VmLabel.WAIT_GONE})
"""The labels of a VM being deleted: nothing of it changes any more."""
LEAVING = frozenset({VmLabel.LEAVE, VmLabel.WAIT_LEFT})
"""The labels of a VM moving off a host that lives."""


class Vm(Base):
    """A VM. `label` is its prog's label (a VmLabel); `running` and `reboots` are what its
    owner asked for, `observed_*` what its host's agent last reported."""

    __tablename__ = "vm"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    project_id: Mapped[UUID] = mapped_column(ForeignKey("project.id"), index=True)
    name: Mapped[str] = mapped_column(String(32))
    location_id: Mapped[UUID] = mapped_column(ForeignKey("location.id"))
    host_id: Mapped[UUID | None] = mapped_column(ForeignKey("host.id"), index=True)
    image_id: Mapped[UUID] = mapped_column(ForeignKey("image.id"), index=True)
    cores: Mapped[int]
    memory_bytes: Mapped[int] = mapped_column(BigInteger)
    disk_bytes: Mapped[int] = mapped_column(BigInteger)
    ssh_keys: Mapped[list[str]] = mapped_column(JSON)
    user_data: Mapped[str | None] = mapped_column(Text)
    affinity_group: Mapped[str | None] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(32), default=VmLabel.WAIT_UP)
    strand_id: Mapped[UUID | None]
    running: Mapped[bool] = mapped_column(default=True)
    reboots: Mapped[int] = mapped_column(default=0)
    observed: Mapped[str | None] = mapped_column(String(16))
    observed_reboots: Mapped[int] = mapped_column(default=0)
    observed_detail: Mapped[str] = mapped_column(Text, default="")
    ha: Mapped[bool] = mapped_column(default=True, server_default=true())
    """Whether the VM is recreated on another host when its host dies (else it stays
    stopped with its dead host)."""
    waiting: Mapped[str | None] = mapped_column(Text)
    """Why a VM that must move fits on no host now; None once placed."""
    console: Mapped[str | None] = mapped_column(Text)
    """The serial console's last bytes, as the agent last sent them."""
    created_at: Mapped[datetime] = mapped_column(default=now)

    __table_args__ = (
        UniqueConstraint("project_id", "name", name="uq_vm_project_name"),
        CheckConstraint("cores > 0 AND memory_bytes > 0 AND disk_bytes > 0", name="vm_sizes"),
    )


class VmEvent(Base):
    """The VM's event log: where it was placed, moves, waits for capacity."""

    __tablename__ = "vm_event"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    vm_id: Mapped[UUID] = mapped_column(ForeignKey("vm.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=now)
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text)


class Nic(Base):
    """A VM's network interface: a stable MAC and, with it, a stable IPv6 address."""

    __tablename__ = "nic"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    vm_id: Mapped[UUID] = mapped_column(ForeignKey("vm.id", ondelete="CASCADE"), index=True)
    number: Mapped[int]
    """Its place among the VM's NICs, from 0."""
    mac: Mapped[str] = mapped_column(String(17), unique=True)
    tap: Mapped[str] = mapped_column(String(15), unique=True)
    address: Mapped[str | None] = mapped_column(String(45))
    """NIC 0's is in its host's /64 (set when the VM is placed); a project network NIC's
    in its network's /64 (None with IPAM `none`)."""
    network_id: Mapped[UUID | None] = mapped_column(ForeignKey("network.id"), index=True)
    """The project network it is in; None: the host network (NIC 0)."""

    __table_args__ = (
        UniqueConstraint("vm_id", "number", name="uq_nic_vm_number"),
        # One NIC per network per VM (NULLs differ, so NIC 0 is not held to it).
        UniqueConstraint("vm_id", "network_id", name="uq_nic_vm_network"),
    )


class Subnet(Base):
    """A /64 of a location's prefix, taken by a host (its VM network) or a project
    network (IPAM `manual` or `auto`). `number` is the /64's index in the prefix."""

    __tablename__ = "subnet"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    location_id: Mapped[UUID] = mapped_column(ForeignKey("location.id"))
    number: Mapped[int]
    host_id: Mapped[UUID | None] = mapped_column(
        ForeignKey("host.id", ondelete="CASCADE"), unique=True
    )
    network_id: Mapped[UUID | None] = mapped_column(
        ForeignKey("network.id", ondelete="CASCADE"), unique=True
    )

    __table_args__ = (UniqueConstraint("location_id", "number", name="uq_subnet_number"),)


class ConsoleTicket(Base):
    """A one-time pass to one VM's console, for the user (and the token, or session)
    that asked; only the SHA-256 of its secret is kept. Good once, for GRANT_SECONDS,
    on the host the VM was on when it was made."""

    __tablename__ = "console_ticket"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    token_id: Mapped[UUID] = mapped_column(ForeignKey("api_token.id", ondelete="CASCADE"))
    vm_id: Mapped[UUID] = mapped_column(ForeignKey("vm.id", ondelete="CASCADE"), index=True)
    host_id: Mapped[UUID] = mapped_column(ForeignKey("host.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    """A ConsoleKind."""
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=now)

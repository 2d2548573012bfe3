"""Bodies of the VM routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, Field

from nubis.api.schemas.common import Input, Name
from nubis.ids import Kind, format_id
from nubis.models import Nic, Vm, VmEvent
from nubis.protocol import ConsoleKind
from nubis.units import Size
from nubis.vms import display_state


class VmCreate(Input):
    name: Name
    image: str = Field(min_length=1, max_length=64)
    """An image of the project's, or a public one: name or id."""
    cores: int = Field(default=1, ge=1, le=64)
    memory: Size = "1G"
    disk: Size | None = None
    """At least the image's virtual size, which is also the default."""
    location: str | None = Field(default=None, max_length=64)
    """Needed only where there is more than one location."""
    ssh_keys: list[str] | None = Field(default=None, max_length=32)
    """OpenSSH public key lines; the project's keys when not given."""
    user_data: str | None = Field(default=None, max_length=65536)
    group: Name | None = None
    """Anti-affinity group: no two VMs of a group share a host."""
    networks: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=15
    )
    """Project networks (names or ids) to give the VM a NIC in, after its host network
    NIC: NICs 1, 2, … in this order."""
    ha: bool = True
    """Recreate the VM on another host when its host dies; false: it stays stopped with
    its dead host until started again."""


class NicOut(BaseModel):
    number: int
    """0: the host network's NIC; 1 and up: project networks'."""
    mac: str
    address: str | None
    """Its IPv6 address; null in a network with IPAM `none`."""
    network: str | None
    """The project network's id; null for the host network."""
    network_name: str | None


class VmOut(BaseModel):
    id: str
    name: str
    state: str
    """For people: creating, starting, running, stopping, stopped, rebooting, deleting,
    failed, moving (to another host), waiting for capacity (to move: no host fits)."""
    cores: int
    memory_bytes: int
    disk_bytes: int
    image: str
    host: str | None
    """The id of the host it is on; null while it has none (being placed, or moving)."""
    host_name: str | None
    nics: list[NicOut]
    ha: bool
    """Whether it is recreated on another host when its host dies."""
    detail: str
    """What went wrong, when the state is `failed`; why no host fits, when it is
    `waiting for capacity`."""
    reboots: int
    """The reboots its host has carried out since the VM was placed there (a VM
    recreated on another host counts from 0 again)."""
    created_at: datetime

    @classmethod
    def of(
        cls,
        vm: Vm,
        nics: list[Nic],
        names: dict[UUID, str],
        *,
        host_name: str | None,
        shown: str | None = None,
    ) -> VmOut:
        """`names`: of the networks the NICs are in. `shown`: the state to show instead,
        for the answer to a request that moves the VM there (its prog has yet to act on
        it)."""
        return cls(
            id=format_id(Kind.VM, vm.id),
            name=vm.name,
            state=shown or display_state(vm),
            cores=vm.cores,
            memory_bytes=vm.memory_bytes,
            disk_bytes=vm.disk_bytes,
            image=format_id(Kind.IMAGE, vm.image_id),
            host=format_id(Kind.HOST, vm.host_id) if vm.host_id else None,
            host_name=host_name,
            nics=[
                NicOut(
                    number=n.number,
                    mac=n.mac,
                    address=n.address,
                    network=format_id(Kind.NETWORK, n.network_id) if n.network_id else None,
                    network_name=names.get(n.network_id) if n.network_id else None,
                )
                for n in nics
            ],
            ha=vm.ha,
            detail=vm.waiting or vm.observed_detail,
            reboots=vm.observed_reboots,
            created_at=vm.created_at,
        )


class VmEventOut(BaseModel):
    at: datetime
    kind: str
    """e.g. placed, host dead, waiting, leaving, left, evacuate, started."""
    detail: str

    @classmethod
    def of(cls, event: VmEvent) -> VmEventOut:
        return cls(at=event.at, kind=event.kind, detail=event.detail)


class ConsoleTicketCreate(Input):
    kind: ConsoleKind = Field(default=ConsoleKind.SERIAL, strict=False)  # strict: enums only
    """`serial` (the guest's ttyS0) or `vnc` (its screen, RFB)."""


class ConsoleTicketOut(BaseModel):
    ticket: str
    """The one-time secret: open `url` with it within 30 seconds, once."""
    kind: ConsoleKind
    expires_at: datetime
    url: str
    """The websocket to open (a path of this API), the ticket in its query."""

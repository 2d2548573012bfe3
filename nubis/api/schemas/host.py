"""Bodies of the operator's host routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from nubis.api.schemas.common import Input
from nubis.ids import Kind, format_id
from nubis.models import Host, HostEvent
from nubis.scheduling.allocator import Difference
from nubis.units import Duration


class HostOut(BaseModel):
    id: str
    name: str
    location: str
    """The location's name."""
    allocation_state: str
    """`accepting`, `draining` (keeps its VMs, takes no new ones) or `maintenance`."""
    health: str
    """`online`, `unreachable` or `dead`."""
    arch: str
    acceleration: str
    underlay_address: str
    cores: int
    threads: int
    memory_bytes: int
    hugepages: int
    disk_bytes: int
    used_cores: int
    used_memory_bytes: int
    used_hugepages: int
    used_disk_bytes: int
    cpu_ratio: float
    """vCPUs per core it may give out."""
    memory_ratio: float
    fenced: bool
    """Its agent said it stopped its VMs: it reached neither the control plane nor its peers."""
    last_heartbeat_at: datetime
    created_at: datetime

    @classmethod
    def of(cls, host: Host, location: str) -> HostOut:
        return cls(
            id=format_id(Kind.HOST, host.id),
            name=host.name,
            location=location,
            allocation_state=host.allocation_state,
            health=host.health,
            arch=host.arch,
            acceleration=host.acceleration,
            underlay_address=host.underlay_address,
            cores=host.cores,
            threads=host.threads,
            memory_bytes=host.memory_bytes,
            hugepages=host.hugepages,
            disk_bytes=host.disk_bytes,
            used_cores=host.used_cores,
            used_memory_bytes=host.used_memory_bytes,
            used_hugepages=host.used_hugepages,
            used_disk_bytes=host.used_disk_bytes,
            cpu_ratio=host.cpu_ratio,
            memory_ratio=host.memory_ratio,
            fenced=host.fenced,
            last_heartbeat_at=host.last_heartbeat_at,
            created_at=host.created_at,
        )


class HostUpdate(Input):
    """The host's overcommit ratios (1.0: none); a field left out stays as it is."""

    cpu_ratio: float | None = Field(default=None, gt=0, le=64, strict=False)
    """vCPUs per core, e.g. 4.0."""
    memory_ratio: float | None = Field(default=None, gt=0, le=64, strict=False)
    """Memory overcommit, e.g. 1.5."""


class HostEventOut(BaseModel):
    id: str
    at: datetime
    kind: str
    """`joined`, `allocation_state`, `ratios`, `health`, `alert`, `evacuate`, …"""
    detail: str

    @classmethod
    def of(cls, event: HostEvent) -> HostEventOut:
        return cls(
            id=format_id(Kind.EVENT, event.id),
            at=event.at,
            kind=event.kind,
            detail=event.detail,
        )


class EvacuationOut(BaseModel):
    host: str
    """The host's id."""
    name: str
    allocation_state: str
    """`draining` (or `maintenance`, if it was): it takes no new VMs."""
    moving: int
    """How many VMs move: each is stopped on the host, then recreated on another."""


class AllocationStateOut(BaseModel):
    host: HostOut
    changed: bool
    """False if the host was in that state already."""


class JoinTokenCreate(Input):
    expires_in: Duration = "1h"
    """How long it may be used, e.g. `1h`, `30m`, `2d`."""


class JoinTokenOut(BaseModel):
    location: str
    """The location's name."""
    secret: str
    """For `nubis agent --join-token`: good for one host, shown once."""
    expires_at: datetime


class CounterDifferenceOut(BaseModel):
    host: str
    """The host's id."""
    name: str
    counter: str
    """`cores`, `memory_bytes`, `hugepages` or `disk_bytes`."""
    recorded: int
    """The host's counter."""
    placed: int
    """The sum of what is placed on the host."""

    @classmethod
    def of(cls, difference: Difference) -> CounterDifferenceOut:
        return cls(
            host=format_id(Kind.HOST, difference.host_id),
            name=difference.host_name,
            counter=difference.counter,
            recorded=difference.recorded,
            placed=difference.allocated,
        )


class CountersOut(BaseModel):
    hosts: int
    """How many hosts were checked."""
    differences: list[CounterDifferenceOut]
    """Every counter that is not the sum of what is placed on its host: none, if all is well."""

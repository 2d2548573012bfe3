"""The filter stages of placement.

Each stage is defined once and has two faces that mean the same: `keeps`, a pure
function of a host and a request (used to explain a refusal, and tested as such), and
`clause`, the same condition in SQL (used to find candidates, and again as the guard
of the atomic update that reserves capacity, so a host is never filled past it).

The SQL face depends only on the request's `Shape` and reads the request's numbers
from bind parameters (`parameters(request)`), so placement builds each statement once
per shape and reuses it: building SQLAlchemy expressions costs more than running them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    BindParameter,
    ColumnElement,
    Integer,
    and_,
    bindparam,
    or_,
    select,
    true,
)

from nubis.models import Allocation, AllocationState, Health, Host

GIB = 1024**3


@dataclass(frozen=True)
class Shape:
    """What of a request changes the SQL that places it, not only its parameters."""

    pinned: bool
    grouped: bool


@dataclass(frozen=True)
class Request:
    """What a VM needs."""

    location_id: UUID
    cores: int
    memory_bytes: int
    disk_bytes: int
    arch: str = "x86_64"
    group: str | None = None
    """Anti-affinity group: never on a host that holds another member of it."""
    host_id: UUID | None = None
    """Operators may pin a VM to one host."""

    @property
    def hugepages(self) -> int:
        """1 GiB pages the VM takes on a host that uses huge pages."""
        return math.ceil(self.memory_bytes / GIB)

    @property
    def memory_per_core(self) -> float:
        return self.memory_bytes / self.cores

    @property
    def shape(self) -> Shape:
        return Shape(pinned=self.host_id is not None, grouped=self.group is not None)


def parameters(request: Request) -> dict[str, Any]:
    """The values of the bind parameters the stages' SQL reads."""
    return {
        "p_location_id": request.location_id,
        "p_host_id": request.host_id,
        "p_arch": request.arch,
        "p_cores": request.cores,
        "p_memory_bytes": request.memory_bytes,
        "p_hugepages": request.hugepages,
        "p_disk_bytes": request.disk_bytes,
        "p_group": request.group,
    }


# The bind parameters; prefixed, because an UPDATE reserves its columns' names for SET.
LOCATION_ID = bindparam("p_location_id", type_=Host.location_id.type)
HOST_ID = bindparam("p_host_id", type_=Host.id.type)
ARCH = bindparam("p_arch", type_=Host.arch.type)
CORES = bindparam("p_cores", type_=Integer)
MEMORY_BYTES = bindparam("p_memory_bytes", type_=BigInteger)
HUGEPAGES = bindparam("p_hugepages", type_=Integer)
DISK_BYTES = bindparam("p_disk_bytes", type_=BigInteger)
GROUP: BindParameter[str] = bindparam("p_group", type_=Allocation.affinity_group.type)


@dataclass(frozen=True)
class Candidate:
    """A host as placement sees it."""

    id: UUID
    location_id: UUID
    arch: str
    allocation_state: str
    health: str
    cores: int
    cpu_ratio: float
    used_cores: int
    memory_bytes: int
    memory_ratio: float
    used_memory_bytes: int
    hugepages: int
    used_hugepages: int
    disk_bytes: int
    used_disk_bytes: int
    groups: frozenset[str] = field(default_factory=frozenset)
    """The anti-affinity groups it holds a member of."""

    @property
    def core_capacity(self) -> float:
        return self.cores * self.cpu_ratio

    @property
    def memory_capacity(self) -> float:
        """Bytes VMs may have: its huge pages when it uses them, else its memory times its ratio."""
        return self.hugepages * GIB if self.hugepages else self.memory_bytes * self.memory_ratio


@dataclass(frozen=True)
class Stage:
    name: str
    refusal: tuple[str, str]
    """What the hosts it removes are: (one host, several hosts)."""
    keeps: Callable[[Candidate, Request], bool]
    clause: Callable[[Shape], ColumnElement[bool]]

    def says(self, count: int) -> str:
        return f"{count} {self.refusal[0] if count == 1 else self.refusal[1]}"


def _fits_memory(host: Candidate, request: Request) -> bool:
    if host.hugepages:
        return host.used_hugepages + request.hugepages <= host.hugepages
    return host.used_memory_bytes + request.memory_bytes <= host.memory_bytes * host.memory_ratio


def _memory_clause(shape: Shape) -> ColumnElement[bool]:
    return or_(
        and_(Host.hugepages > 0, Host.used_hugepages + HUGEPAGES <= Host.hugepages),
        and_(
            Host.hugepages == 0,
            Host.used_memory_bytes + MEMORY_BYTES <= Host.memory_bytes * Host.memory_ratio,
        ),
    )


def _group_clause(shape: Shape) -> ColumnElement[bool]:
    if not shape.grouped:
        return true()
    # NOT IN over an uncorrelated subquery: evaluated once per statement, where a
    # correlated NOT EXISTS is run per host under a prepared statement's generic plan.
    return Host.id.not_in(select(Allocation.host_id).where(Allocation.affinity_group == GROUP))


STAGES: tuple[Stage, ...] = (
    Stage(
        "location",
        ("was in another location", "were in another location"),
        lambda h, r: h.location_id == r.location_id,
        lambda s: Host.location_id == LOCATION_ID,
    ),
    Stage(
        "pin",
        ("was not the requested host", "were not the requested host"),
        lambda h, r: r.host_id is None or h.id == r.host_id,
        lambda s: Host.id == HOST_ID if s.pinned else true(),
    ),
    Stage(
        "arch",
        ("had another architecture", "had another architecture"),
        lambda h, r: h.arch == r.arch,
        lambda s: Host.arch == ARCH,
    ),
    Stage(
        "draining",
        ("was draining", "were draining"),
        lambda h, r: h.allocation_state != AllocationState.DRAINING,
        lambda s: Host.allocation_state != AllocationState.DRAINING,
    ),
    Stage(
        "maintenance",
        ("was in maintenance", "were in maintenance"),
        lambda h, r: h.allocation_state != AllocationState.MAINTENANCE,
        lambda s: Host.allocation_state != AllocationState.MAINTENANCE,
    ),
    Stage(
        "unreachable",
        ("was unreachable", "were unreachable"),
        lambda h, r: h.health != Health.UNREACHABLE,
        lambda s: Host.health != Health.UNREACHABLE,
    ),
    Stage(
        "dead",
        ("was dead", "were dead"),
        lambda h, r: h.health != Health.DEAD,
        lambda s: Host.health != Health.DEAD,
    ),
    Stage(
        "cores",
        ("had too few free cores", "had too few free cores"),
        lambda h, r: h.used_cores + r.cores <= h.cores * h.cpu_ratio,
        lambda s: Host.used_cores + CORES <= Host.cores * Host.cpu_ratio,
    ),
    Stage(
        "memory",
        ("had too little free memory", "had too little free memory"),
        _fits_memory,
        _memory_clause,
    ),
    Stage(
        "disk",
        ("had too little free disk", "had too little free disk"),
        lambda h, r: h.used_disk_bytes + r.disk_bytes <= h.disk_bytes,
        lambda s: Host.used_disk_bytes + DISK_BYTES <= Host.disk_bytes,
    ),
    Stage(
        "anti-affinity",
        ("held a VM of the same group", "held a VM of the same group"),
        lambda h, r: r.group is None or r.group not in h.groups,
        _group_clause,
    ),
)


def sift(hosts: list[Candidate], request: Request) -> tuple[list[Candidate], dict[str, int]]:
    """The hosts every stage keeps, and how many hosts each stage removed."""
    removed: dict[str, int] = {}
    for stage in STAGES:
        kept = [host for host in hosts if stage.keeps(host, request)]
        if len(kept) < len(hosts):
            removed[stage.name] = len(hosts) - len(kept)
        hosts = kept
    return hosts, removed


def explain(removed: dict[str, int]) -> str:
    """`3 hosts had too few free cores, 1 was draining`, in the order of `removed` (which
    `sift` gives in stage order)."""
    by_name = {stage.name: stage for stage in STAGES}
    parts = [by_name[name].says(count) for name, count in removed.items()]
    if parts:
        first, *rest = parts
        parts = [first.replace(" ", " host " if first.startswith("1 ") else " hosts ", 1), *rest]
    return ", ".join(parts) or "there is no host"


def offered_cores(host: Candidate, request: Request) -> int:
    """The cores an empty `host` gives VMs shaped like `request`, all told: as many VMs as
    both its cores and its memory hold. A host whose memory per core is below the VMs' is
    used with fewer cores rather than refused: a 32-core, 128 GiB host offers 1-core,
    8 GiB VMs 16 cores. On a host with huge pages each VM takes whole 1 GiB pages."""
    by_cores = math.floor(host.core_capacity / request.cores)
    if host.hugepages:
        by_memory = host.hugepages // request.hugepages
    else:
        by_memory = math.floor(host.memory_bytes * host.memory_ratio / request.memory_bytes)
    return min(by_cores, by_memory) * request.cores

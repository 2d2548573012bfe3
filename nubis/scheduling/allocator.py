"""Reserving capacity on a host and giving it back, exactly.

A reservation is one UPDATE of the host's counters, guarded by every filter stage
(so it cannot fill a host past its capacity even if the host changed since it was
chosen), and the INSERT of an allocation row, in the caller's transaction. A give-back
deletes the allocation row and subtracts what the row held; a second give-back finds
no row and does nothing, so capacity comes back exactly once, whatever crashes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import Select, Update, bindparam, case, delete, func, insert, select, update
from sqlalchemy.orm import Session

from nubis.errors import NoCapacity
from nubis.models import Allocation, Host, Location
from nubis.scheduling import stages
from nubis.scheduling.stages import (
    GIB,
    STAGES,
    Candidate,
    Request,
    Shape,
    explain,
    parameters,
    sift,
)
from nubis.scheduling.weigher import Policy, order_clause

CANDIDATES = 8
"""Hosts tried, best first, before placement looks again from scratch."""


@dataclass(frozen=True)
class Placement:
    """What a consumer holds, and where."""

    consumer: str
    host_id: UUID
    cores: int
    memory_bytes: int
    hugepages: int
    disk_bytes: int


def candidates(session: Session, request: Request) -> list[Candidate]:
    """Every host of the request's location (and a pinned host), as placement sees them."""
    where = Host.location_id == request.location_id
    if request.host_id is not None:
        where = where | (Host.id == request.host_id)
    columns = [getattr(Host, name) for name in Candidate.__dataclass_fields__ if name != "groups"]
    rows = session.execute(select(*columns).where(where).order_by(Host.id)).all()
    grouped: set[UUID] = set()
    if request.group is not None:
        grouped = set(
            session.scalars(
                select(Allocation.host_id).where(Allocation.affinity_group == request.group)
            )
        )
    held = frozenset({request.group}) if request.group else frozenset()
    return [
        Candidate(**row._asdict(), groups=held if row.id in grouped else frozenset())
        for row in rows
    ]


_CONSUMER = bindparam("p_consumer", type_=Allocation.consumer.type)
_CHOSEN = bindparam("p_chosen", type_=Host.id.type)
_HELD = (
    Allocation.host_id,
    Allocation.cores,
    Allocation.memory_bytes,
    Allocation.hugepages,
    Allocation.disk_bytes,
)
_EXISTING = select(*_HELD).where(Allocation.consumer == _CONSUMER)
_GROUP_COUNT = (
    select(func.count())
    .select_from(Allocation)
    .where(Allocation.host_id == _CHOSEN, Allocation.affinity_group == stages.GROUP)
)
_ALLOCATE = insert(Allocation).values(
    host_id=_CHOSEN,
    consumer=_CONSUMER,
    cores=stages.CORES,
    memory_bytes=bindparam("p_held_memory_bytes"),
    hugepages=bindparam("p_held_hugepages"),
    disk_bytes=stages.DISK_BYTES,
    affinity_group=stages.GROUP,
)
_FREE = delete(Allocation).where(Allocation.consumer == _CONSUMER).returning(*_HELD)
_GIVE_BACK = (
    update(Host)
    .where(Host.id == _CHOSEN)
    .values(
        used_cores=Host.used_cores - stages.CORES,
        used_memory_bytes=Host.used_memory_bytes - stages.MEMORY_BYTES,
        used_hugepages=Host.used_hugepages - stages.HUGEPAGES,
        used_disk_bytes=Host.used_disk_bytes - stages.DISK_BYTES,
    )
)


@dataclass(frozen=True)
class _Statements:
    choose: Select[UUID]
    """The best hosts that every stage keeps."""
    take: Update
    """Reserve on the chosen host, guarded by every stage again; returns its huge pages."""


@functools.cache
def _statements(shape: Shape, policy: Policy) -> _Statements:
    guards = [stage.clause(shape) for stage in STAGES]
    return _Statements(
        choose=select(Host.id).where(*guards).order_by(*order_clause(policy)).limit(CANDIDATES),
        take=update(Host)
        .where(Host.id == _CHOSEN, *guards)
        .values(
            used_cores=Host.used_cores + stages.CORES,
            used_memory_bytes=Host.used_memory_bytes
            + case((Host.hugepages == 0, stages.MEMORY_BYTES), else_=0),
            used_hugepages=Host.used_hugepages
            + case((Host.hugepages > 0, stages.HUGEPAGES), else_=0),
            used_disk_bytes=Host.used_disk_bytes + stages.DISK_BYTES,
        )
        .returning(Host.hugepages),
    )


def place(
    session: Session, request: Request, consumer: str, policy: Policy = Policy.SPREAD
) -> Placement:
    """Reserve what `request` needs on the best host for `consumer`; NoCapacity says why
    not when nothing fits. Placing a consumer that holds a placement already answers it."""
    # Core statements on the session's connection: the ORM's bookkeeping would cost
    # more than the statements (see docs/hosts.md, Placement speed).
    connection = session.connection()
    existing = connection.execute(_EXISTING, {"p_consumer": consumer}).one_or_none()
    if existing is not None:
        return Placement(consumer, *existing)  # a retried label must not place twice
    statements = _statements(request.shape, policy)
    values = parameters(request) | {"p_consumer": consumer}
    for host_id in connection.execute(statements.choose, values).scalars().all():
        values["p_chosen"] = host_id
        paged = connection.execute(statements.take, values).scalar_one_or_none()
        if paged is None:
            continue  # it filled up since it was chosen
        held = _held(request, consumer, host_id, paged > 0)
        connection.execute(
            _ALLOCATE,
            values | {"p_held_memory_bytes": held.memory_bytes, "p_held_hugepages": held.hugepages},
        )
        if request.group is not None and connection.execute(_GROUP_COUNT, values).scalar_one() > 1:
            # Another placement of the group reached this host at the same time (each
            # statement sees what committed before it, so one of the two sees the other).
            release(session, consumer)
            continue
        return held
    raise NoCapacity(_refusal(session, request))


def _held(request: Request, consumer: str, host_id: UUID, paged: bool) -> Placement:
    """What `request` takes on a host: huge pages where it uses them, else memory."""
    return Placement(
        consumer,
        host_id,
        request.cores,
        0 if paged else request.memory_bytes,
        request.hugepages if paged else 0,
        request.disk_bytes,
    )


def _refusal(session: Session, request: Request) -> str:
    kept, removed = sift(candidates(session, request), request)
    location = session.scalar(select(Location.name).where(Location.id == request.location_id))
    memory = f"{request.memory_bytes / GIB:g} GiB"
    disk = f"{request.disk_bytes / GIB:g} GiB"
    cores = f"{request.cores} free core{'' if request.cores == 1 else 's'}"
    want = f"{cores}, {memory} of memory and {disk} of disk"
    reason = explain(removed)
    if kept:  # every stage kept some, but they filled up while we tried
        reason = "the hosts that fit filled up meanwhile; try again"
    return f"no host with {want} in location {location or request.location_id}: {reason}"


def release(session: Session, consumer: str) -> bool:
    """Give back what `consumer` holds. False if it holds nothing (given back already)."""
    connection = session.connection()
    freed = connection.execute(_FREE, {"p_consumer": consumer}).one_or_none()
    if freed is None:
        return False
    host_id, cores, memory, pages, disk = freed
    values: dict[str, Any] = {
        "p_chosen": host_id,
        "p_cores": cores,
        "p_memory_bytes": memory,
        "p_hugepages": pages,
        "p_disk_bytes": disk,
    }
    connection.execute(_GIVE_BACK, values)
    return True


@dataclass(frozen=True)
class Difference:
    """A host whose counters are not the sum of its allocations."""

    host_id: UUID
    host_name: str
    counter: str
    recorded: int
    allocated: int


def differences(session: Session) -> list[Difference]:
    """Every host counter that is not the sum of what is placed on the host."""
    sums = (
        select(
            Allocation.host_id,
            func.sum(Allocation.cores).label("cores"),
            func.sum(Allocation.memory_bytes).label("memory"),
            func.sum(Allocation.hugepages).label("hugepages"),
            func.sum(Allocation.disk_bytes).label("disk"),
        )
        .group_by(Allocation.host_id)
        .subquery()
    )
    rows = session.execute(
        select(
            Host.id,
            Host.name,
            Host.used_cores,
            Host.used_memory_bytes,
            Host.used_hugepages,
            Host.used_disk_bytes,
            func.coalesce(sums.c.cores, 0),
            func.coalesce(sums.c.memory, 0),
            func.coalesce(sums.c.hugepages, 0),
            func.coalesce(sums.c.disk, 0),
        )
        .outerjoin(sums, sums.c.host_id == Host.id)
        .order_by(Host.name)
    ).all()
    found = []
    for host_id, name, *numbers in rows:
        recorded, allocated = numbers[:4], numbers[4:]
        for counter, have, want in zip(
            ("cores", "memory_bytes", "hugepages", "disk_bytes"), recorded, allocated, strict=True
        ):
            if int(have) != int(want):
                found.append(Difference(host_id, name, counter, int(have), int(want)))
    return found

"""Reserving capacity on a host and giving it back, exactly.

A reservation is one UPDATE of the host's counters, guarded by every filter stage
(so it cannot fill a host past its capacity even if the host changed since it was
chosen), and the INSERT of an allocation row, in the caller's transaction. A give-back
deletes the allocation row and subtracts what the row held; a second give-back finds
no row and does nothing, so capacity comes back exactly once, whatever crashes.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.orm import Session

from nubis.errors import NoCapacity
from nubis.models import Allocation, Host, Location
from nubis.scheduling.stages import GIB, STAGES, Candidate, Request, explain, sift
from nubis.scheduling.weigher import Policy, order_clause

CANDIDATES = 8
"""Hosts tried, best first, before placement looks again from scratch."""


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


def _take(session: Session, host_id: UUID, request: Request, consumer: str) -> Allocation | None:
    """Reserve on one host if every stage still keeps it; None if it no longer does."""
    taken = session.execute(
        update(Host)
        .where(Host.id == host_id, *(stage.clause(request) for stage in STAGES))
        .values(
            used_cores=Host.used_cores + request.cores,
            used_memory_bytes=Host.used_memory_bytes
            + case((Host.hugepages == 0, request.memory_bytes), else_=0),
            used_hugepages=Host.used_hugepages
            + case((Host.hugepages > 0, request.hugepages), else_=0),
            used_disk_bytes=Host.used_disk_bytes + request.disk_bytes,
        )
        .returning(Host.hugepages)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if taken is None:
        return None
    allocation = Allocation(
        host_id=host_id,
        consumer=consumer,
        cores=request.cores,
        memory_bytes=0 if taken else request.memory_bytes,
        hugepages=request.hugepages if taken else 0,
        disk_bytes=request.disk_bytes,
        affinity_group=request.group,
    )
    session.add(allocation)
    session.flush()
    if request.group is not None and _group_count(session, host_id, request.group) > 1:
        # Another placement of the group reached this host at the same time (each
        # statement sees what committed before it, so one of the two sees the other).
        release(session, consumer)
        return None
    return allocation


def _group_count(session: Session, host_id: UUID, group: str) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Allocation)
            .where(Allocation.host_id == host_id, Allocation.affinity_group == group)
        )
        or 0
    )


def place(
    session: Session, request: Request, consumer: str, policy: Policy = Policy.SPREAD
) -> Allocation:
    """Reserve what `request` needs on the best host for `consumer`; NoCapacity says why
    not when nothing fits."""
    existing = session.scalars(select(Allocation).where(Allocation.consumer == consumer)).first()
    if existing is not None:
        return existing  # placed already: a retried label must not place twice
    query = (
        select(Host.id)
        .where(*(stage.clause(request) for stage in STAGES))
        .order_by(*order_clause(policy))
        .limit(CANDIDATES)
    )
    for host_id in session.scalars(query).all():
        allocation = _take(session, host_id, request, consumer)
        if allocation is not None:
            return allocation
    raise NoCapacity(_refusal(session, request))


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
    freed = session.execute(
        delete(Allocation)
        .where(Allocation.consumer == consumer)
        .returning(
            Allocation.host_id,
            Allocation.cores,
            Allocation.memory_bytes,
            Allocation.hugepages,
            Allocation.disk_bytes,
        )
        .execution_options(synchronize_session=False)
    ).one_or_none()
    if freed is None:
        return False
    host_id, cores, memory, pages, disk = freed
    session.execute(
        update(Host)
        .where(Host.id == host_id)
        .values(
            used_cores=Host.used_cores - cores,
            used_memory_bytes=Host.used_memory_bytes - memory,
            used_hugepages=Host.used_hugepages - pages,
            used_disk_bytes=Host.used_disk_bytes - disk,
        )
        .execution_options(synchronize_session=False)
    )
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

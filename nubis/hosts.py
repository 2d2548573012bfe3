"""Hosts: joining with a one-time token, heartbeats, allocation states, removal.

Every change to a host is written to its event log in the same transaction. A join
or a removal changes who watches whom in the location (`peers.py`): the hosts whose
peers change are told (their desired revision grows).
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from datetime import timedelta
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nubis import peers, revisions
from nubis.clock import now
from nubis.db.refs import ref_clause
from nubis.engine import strand
from nubis.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from nubis.ids import Kind
from nubis.ipam import host_subnets
from nubis.models import (
    Allocation,
    AllocationState,
    Health,
    Host,
    HostEvent,
    JoinToken,
    Vm,
)
from nubis.protocol import HostReport
from nubis.scheduling import waiting

JOIN_TOKEN_PREFIX = "nubis_join_"
CREDENTIAL_PREFIX = "nubis_host_"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def record(session: Session, host_id: UUID, kind: str, detail: str) -> None:
    session.add(HostEvent(host_id=host_id, kind=kind, detail=detail))


def issue_join_token(session: Session, location_id: UUID, lifetime: timedelta) -> str:
    """A secret that lets one host join the location, once, within `lifetime`."""
    secret = JOIN_TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        JoinToken(
            location_id=location_id, secret_sha256=_digest(secret), expires_at=now() + lifetime
        )
    )
    return secret


def register(session: Session, join_token: str, report: HostReport) -> tuple[Host, str]:
    """Spend a join token on a new host; the host (with its /64) and its credential
    (shown once). Its monitor is the caller's to start (`HostMonitor.assemble`)."""
    token = session.scalars(
        select(JoinToken).where(JoinToken.secret_sha256 == _digest(join_token)).with_for_update()
    ).one_or_none()
    if token is None or token.used_by is not None or token.expires_at <= now():
        raise Unauthenticated("the join token is not valid: unknown, used or expired")
    if session.scalar(select(Host.id).where(Host.name == report.name)) is not None:
        raise Conflict(f"a host named {report.name!r} exists already; remove it first")
    try:
        underlay = ipaddress.ip_address(report.underlay_address)
    except ValueError:
        raise InvalidInput(f"{report.underlay_address!r} is not an address") from None
    credential = CREDENTIAL_PREFIX + secrets.token_urlsafe(32)
    before = peers.location_ring(session, token.location_id)
    host = Host(
        location_id=token.location_id,
        name=report.name,
        credential_sha256=_digest(credential),
        arch=report.arch,
        acceleration=report.acceleration,
        underlay_address=str(underlay),
        cores=report.cores,
        threads=max(report.threads, report.cores),
        memory_bytes=report.memory_bytes,
        hugepages=report.hugepages,
        disk_bytes=report.disk_bytes,
    )
    session.add(host)
    session.flush()
    token.used_by = host.id
    prefix = host_subnets.assign(session, host)
    _touch_peers(session, before, peers.location_ring(session, host.location_id))
    record(
        session,
        host.id,
        "joined",
        f"{report.cores} cores, {report.memory_bytes} bytes of memory, {report.hugepages} "
        f"huge pages, {report.disk_bytes} bytes of disk, {report.arch}, {report.acceleration}, "
        f"underlay {underlay}, VM network {prefix}",
    )
    waiting.wake(session, host.location_id)
    return host, credential


def _touch_peers(
    session: Session,
    before: dict[UUID, tuple[UUID, ...]],
    after: dict[UUID, tuple[UUID, ...]],
) -> None:
    """Raise the desired revision of each host whose peers changed."""
    for host_id in peers.changed(before, after):
        revisions.touch(session, host_id)


def authenticate(session: Session, credential: str) -> Host:
    host = session.scalars(
        select(Host).where(Host.credential_sha256 == _digest(credential))
    ).one_or_none()
    if host is None:
        raise Unauthenticated("not a host credential")
    return host


def heartbeat(session: Session, host: Host) -> None:
    host.last_heartbeat_at = now()
    if host.health != Health.ONLINE and host.monitor_id is not None:
        strand.incr(session, host.monitor_id, "heartbeat")


def find(session: Session, ref: str, *, lock: bool = False) -> Host:
    query = select(Host).where(ref_clause(Kind.HOST, Host.id, Host.name, ref))
    host = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if host is None:
        raise NotFound(f"no host {ref!r}")
    return host


def set_allocation_state(session: Session, host: Host, state: AllocationState, why: str) -> bool:
    """Move a host to `state`; False if it was there already."""
    if host.allocation_state == state:
        return False
    record(session, host.id, "allocation_state", f"{host.allocation_state} -> {state}: {why}")
    host.allocation_state = state
    if state == AllocationState.ACCEPTING:
        waiting.wake(session, host.location_id)
    return True


def set_ratios(session: Session, host: Host, cpu: float | None, memory: float | None) -> None:
    """Change a host's overcommit ratios; refused if what it holds would no longer fit."""
    cpu = host.cpu_ratio if cpu is None else cpu
    memory = host.memory_ratio if memory is None else memory
    if cpu <= 0 or memory <= 0:
        raise InvalidInput("overcommit ratios must be above 0")
    if host.used_cores > host.cores * cpu or host.used_memory_bytes > host.memory_bytes * memory:
        raise Conflict(
            f"host {host.name} holds more than those ratios allow "
            f"({host.used_cores} cores, {host.used_memory_bytes} bytes of memory in use)"
        )
    record(
        session,
        host.id,
        "ratios",
        f"cpu {host.cpu_ratio} -> {cpu}, memory {host.memory_ratio} -> {memory}",
    )
    host.cpu_ratio, host.memory_ratio = cpu, memory


def remove(session: Session, host: Host) -> None:
    """Forget a host that holds nothing; its monitor stops."""
    held = session.scalar(
        select(func.count()).select_from(Allocation).where(Allocation.host_id == host.id)
    )
    if held:
        raise Conflict(
            f"host {host.name} still holds {held} placement(s); drain it and move them first"
        )
    stranded = session.scalar(select(func.count()).select_from(Vm).where(Vm.host_id == host.id))
    if stranded:
        raise Conflict(
            f"host {host.name} still has {stranded} VM(s) (--no-ha, stopped with it): "
            "delete them, or start them so they are placed elsewhere"
        )
    before = peers.location_ring(session, host.location_id)
    if host.monitor_id is not None:
        strand.incr(session, host.monitor_id, "remove")
    session.delete(host)
    session.flush()
    _touch_peers(session, before, peers.location_ring(session, host.location_id))

"""`/v1/admin/hosts`: operators watch hosts, take them in and out of service, change
their overcommit, evacuate and remove them, and check their counters.

Every change goes through the host service (`nubis/hosts.py`, `nubis/evacuation.py`)
and leaves an audit event (`admin.host.drain`, …; `nubis/api/operators.py`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response, status
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nubis import evacuation, hosts
from nubis.api.deps import DatabaseDep, PrincipalDep
from nubis.api.operators import Change, change
from nubis.api.pagination import Cursor, Limit, Page, fetch_page
from nubis.api.schemas.host import (
    AllocationStateOut,
    CounterDifferenceOut,
    CountersOut,
    EvacuationOut,
    HostEventOut,
    HostOut,
    HostUpdate,
)
from nubis.auth.authz import Action, authorize
from nubis.ids import Kind, format_id
from nubis.models import AllocationState, Host, HostEvent, Location
from nubis.scheduling.allocator import differences

router = APIRouter(prefix="/v1/admin", tags=["admin"])


def _out(session: Session, host: Host) -> HostOut:
    location = session.get(Location, host.location_id)
    return HostOut.of(host, location.name if location else "?")


@router.get("/hosts")
def list_hosts(
    db: DatabaseDep, principal: PrincipalDep, limit: Limit = 100, cursor: Cursor = None
) -> Page[HostOut]:
    """Every host, with its location's name, capacity and what it holds."""
    authorize(principal, Action.OPERATE)
    with db.reading() as session:
        query = select(Host, Location.name).join(Location, Location.id == Host.location_id)
        rows, next_cursor = fetch_page(
            session, query, Host.id, cursor, limit, key_of=lambda r: r[0].id
        )
        return Page(items=[HostOut.of(h, name) for h, name in rows], next_cursor=next_cursor)


@router.get("/hosts/{host}")
def read_host(host: str, db: DatabaseDep, principal: PrincipalDep) -> HostOut:
    authorize(principal, Action.OPERATE)
    with db.reading() as session:
        return _out(session, hosts.find(session, host))


@router.get("/hosts/{host}/events")
def list_host_events(
    host: str, db: DatabaseDep, principal: PrincipalDep, limit: Limit = 100, cursor: Cursor = None
) -> Page[HostEventOut]:
    """The host's event log, oldest first: joining, health, states, evacuations, alerts."""
    authorize(principal, Action.OPERATE)
    with db.reading() as session:
        found = hosts.find(session, host)
        query = select(HostEvent).where(HostEvent.host_id == found.id)
        rows, next_cursor = fetch_page(
            session, query, HostEvent.id, cursor, limit, key_of=lambda r: r[0].id
        )
        return Page(items=[HostEventOut.of(e) for (e,) in rows], next_cursor=next_cursor)


@router.patch("/hosts/{host}")
def update_host(
    host: str, body: HostUpdate, act: Annotated[Change, change("admin.host.update")]
) -> HostOut:
    """Change the host's overcommit ratios; refused (409) if what it holds would no
    longer fit."""
    with act.transaction() as session:
        found = hosts.find(session, host, lock=True)
        act.target = format_id(Kind.HOST, found.id)
        before = (found.cpu_ratio, found.memory_ratio)
        hosts.set_ratios(session, found, body.cpu_ratio, body.memory_ratio)
        act.detail = (
            f"{found.name}: cpu ratio {before[0]} -> {found.cpu_ratio}, "
            f"memory ratio {before[1]} -> {found.memory_ratio}"
        )
        return _out(session, found)


def _set_state(act: Change, ref: str, state: AllocationState, why: str) -> AllocationStateOut:
    with act.transaction() as session:
        found = hosts.find(session, ref, lock=True)
        act.target = format_id(Kind.HOST, found.id)
        before = found.allocation_state
        changed = hosts.set_allocation_state(session, found, state, why)
        act.detail = f"{found.name}: {before} -> {state}" if changed else f"{found.name}: {state}"
        return AllocationStateOut(host=_out(session, found), changed=changed)


@router.post("/hosts/{host}/drain")
def drain_host(host: str, act: Annotated[Change, change("admin.host.drain")]) -> AllocationStateOut:
    """The host takes no new VMs; the ones there stay."""
    return _set_state(act, host, AllocationState.DRAINING, "drained by an operator")


@router.post("/hosts/{host}/undrain")
def undrain_host(
    host: str, act: Annotated[Change, change("admin.host.undrain")]
) -> AllocationStateOut:
    """The host takes new VMs again (VMs waiting for capacity try it at once)."""
    return _set_state(act, host, AllocationState.ACCEPTING, "undrained by an operator")


@router.post("/hosts/{host}/maintenance")
def put_host_in_maintenance(
    host: str, act: Annotated[Change, change("admin.host.maintenance")]
) -> AllocationStateOut:
    """The host is out of service (no new VMs); `undrain` brings it back."""
    return _set_state(act, host, AllocationState.MAINTENANCE, "put in maintenance by an operator")


@router.post("/hosts/{host}/evacuate", status_code=status.HTTP_202_ACCEPTED)
def evacuate_host(
    host: str, act: Annotated[Change, change("admin.host.evacuate")]
) -> EvacuationOut:
    """Empty a host for maintenance: it takes no new VMs (`draining`), and each of its VMs
    is stopped there, then recreated on another host (never running on both). The VMs
    show `moving`; the host's and the VMs' event logs tell each step."""
    with act.transaction() as session:
        found = hosts.find(session, host, lock=True)
        act.target = format_id(Kind.HOST, found.id)
        moving = evacuation.evacuate(session, found)
        act.detail = f"{found.name} ({found.allocation_state}): {moving} VM(s) move"
        return EvacuationOut(
            host=format_id(Kind.HOST, found.id),
            name=found.name,
            allocation_state=found.allocation_state,
            moving=moving,
        )


@router.delete("/hosts/{host}", status_code=status.HTTP_204_NO_CONTENT)
def remove_host(host: str, act: Annotated[Change, change("admin.host.remove")]) -> Response:
    """Forget a host that holds no VMs (409 while it does); its agent must join again to
    come back."""
    with act.transaction() as session:
        found = hosts.find(session, host, lock=True)
        act.target = format_id(Kind.HOST, found.id)
        act.detail = f"{found.name} removed"
        hosts.remove(session, found)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/counters")
def check_counters(db: DatabaseDep, principal: PrincipalDep) -> CountersOut:
    """Compare every host's counters (cores, memory, huge pages, disk in use) with the sum
    of what is placed on it; each difference is a bug to look into."""
    authorize(principal, Action.OPERATE)
    with db.reading() as session:
        found = differences(session)
        count = session.scalar(select(func.count()).select_from(Host)) or 0
    return CountersOut(hosts=count, differences=[CounterDifferenceOut.of(d) for d in found])

"""`nubis admin location …` and `nubis admin host …`: where hosts are, how they join,
whether they take VMs, and whether their counters add up.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from sqlalchemy import select

from nubis import evacuation, hosts, locations
from nubis.cli.output import JsonOption, console, fail, listing, show
from nubis.cli.store import database
from nubis.ids import Kind, format_id
from nubis.models import AllocationState, Flooding, Host, HostEvent, Location
from nubis.scheduling.allocator import differences
from nubis.units import parse_duration

location_app = typer.Typer(help="Locations: where hosts are.", no_args_is_help=True)
host_app = typer.Typer(help="Hosts: joining, states, checks.", no_args_is_help=True)

GIB = 1024**3


@location_app.command("create")
def location_create(
    name: str,
    prefix: Annotated[str, typer.Option(help="Its IPv6 prefix, e.g. 2001:db8:1::/48.")],
    display_name: Annotated[str | None, typer.Option(help="A name for people.")] = None,
    flooding: Annotated[
        Flooding, typer.Option(help="How VXLAN reaches the hosts of a network.")
    ] = Flooding.MULTICAST,
) -> None:
    with database() as db, db.transaction() as session:
        made = locations.create(session, name, prefix, display_name=display_name, flooding=flooding)
        console.print(f"Created location {made.name} ({made.prefix}, {made.flooding} flooding).")


@location_app.command("list")
def location_list(as_json: JsonOption = False) -> None:
    with database() as db, db.reading() as session:
        rows = [
            {
                "name": loc.name,
                "display_name": loc.display_name,
                "prefix": loc.prefix,
                "flooding": loc.flooding,
                "id": format_id(Kind.LOCATION, loc.id),
            }
            for loc in session.scalars(select(Location).order_by(Location.name))
        ]
    listing(rows, ["name", "display_name", "prefix", "flooding", "id"], as_json)


@location_app.command("set")
def location_set(
    name: str,
    flooding: Annotated[
        Flooding, typer.Option(help="How VXLAN reaches the hosts of the location's networks.")
    ],
) -> None:
    """Change how a location's networks flood; its hosts rebuild their VXLANs."""
    with database() as db, db.transaction() as session:
        found = locations.find(session, name)
        changed = locations.set_flooding(session, found, flooding)
    console.print(f"{name} {'now floods' if changed else 'floods already'} by {flooding}.")


@host_app.command("join-token")
def host_join_token(
    location: Annotated[str, typer.Option(help="The location the host joins.")],
    expires_in: Annotated[str, typer.Option(help="How long it may be used.")] = "1h",
) -> None:
    """A one-time token for `nubis agent --join-token`."""
    lifetime = parse_duration(expires_in)
    with database() as db, db.transaction() as session:
        secret = hosts.issue_join_token(session, locations.find(session, location).id, lifetime)
    console.print(secret)


def _summary(host: Host, location: str) -> dict[str, Any]:
    return {
        "name": host.name,
        "location": location,
        "allocation_state": host.allocation_state,
        "health": host.health,
        "cores": f"{host.used_cores}/{host.cores}",
        "memory_gib": f"{host.used_memory_bytes / GIB:g}/{host.memory_bytes / GIB:g}",
        "hugepages": f"{host.used_hugepages}/{host.hugepages}",
        "disk_gib": f"{host.used_disk_bytes / GIB:g}/{host.disk_bytes / GIB:g}",
        "arch": host.arch,
        "acceleration": host.acceleration,
        "underlay": host.underlay_address,
        "last_heartbeat": host.last_heartbeat_at.isoformat(timespec="seconds"),
        "id": format_id(Kind.HOST, host.id),
    }


@host_app.command("list")
def host_list(as_json: JsonOption = False) -> None:
    with database() as db, db.reading() as session:
        rows = [
            _summary(host, name)
            for host, name in session.execute(
                select(Host, Location.name)
                .join(Location, Location.id == Host.location_id)
                .order_by(Location.name, Host.name)
            )
        ]
    columns = ["name", "location", "allocation_state", "health", "cores", "memory_gib"]
    listing(rows, [*columns, "disk_gib", "last_heartbeat"], as_json)


@host_app.command("show")
def host_show(host: str, as_json: JsonOption = False) -> None:
    """A host, its capacity and its event log."""
    with database() as db, db.reading() as session:
        found = hosts.find(session, host)
        location = session.get(Location, found.location_id)
        detail = _summary(found, location.name if location else "?")
        detail["cpu_ratio"], detail["memory_ratio"] = found.cpu_ratio, found.memory_ratio
        events = session.scalars(
            select(HostEvent).where(HostEvent.host_id == found.id).order_by(HostEvent.id)
        ).all()
        detail["events"] = [
            f"{e.at.isoformat(timespec='seconds')} {e.kind}: {e.detail}" for e in events
        ]
    if as_json:
        show(detail, as_json=True)
        return
    log = detail.pop("events")
    show(detail, as_json=False)
    console.print("events:")
    for line in log:
        console.print(f"  {line}")


def _set_state(host: str, state: AllocationState, why: str) -> None:
    with database() as db, db.transaction() as session:
        found = hosts.find(session, host, lock=True)
        changed = hosts.set_allocation_state(session, found, state, why)
    console.print(f"{host} is {'now ' if changed else 'already '}{state}")


@host_app.command("drain")
def host_drain(host: str) -> None:
    """Take no new VMs on the host; the ones there stay."""
    _set_state(host, AllocationState.DRAINING, "drained by an operator")


@host_app.command("undrain")
def host_undrain(host: str) -> None:
    """Take new VMs again."""
    _set_state(host, AllocationState.ACCEPTING, "undrained by an operator")


@host_app.command("maintenance")
def host_maintenance(host: str) -> None:
    """Take the host out of service for maintenance (no new VMs); `undrain` brings it back."""
    _set_state(host, AllocationState.MAINTENANCE, "put in maintenance by an operator")


@host_app.command("evacuate")
def host_evacuate(host: str) -> None:
    """Empty the host for maintenance: it takes no new VMs, and each of its VMs is
    stopped there, then recreated on another host (`show` has each step)."""
    with database() as db, db.transaction() as session:
        found = hosts.find(session, host, lock=True)
        moving = evacuation.evacuate(session, found)
        state = found.allocation_state
    console.print(f"Evacuating {host} ({state}): {moving} VM(s) move to other hosts.")


@host_app.command("overcommit")
def host_overcommit(
    host: str,
    cpu: Annotated[float | None, typer.Option(help="vCPUs per core, e.g. 4.0.")] = None,
    memory: Annotated[float | None, typer.Option(help="Memory overcommit, e.g. 1.5.")] = None,
) -> None:
    """Set the host's overcommit ratios (1.0: none)."""
    with database() as db, db.transaction() as session:
        found = hosts.find(session, host, lock=True)
        hosts.set_ratios(session, found, cpu, memory)
        console.print(f"{host}: cpu ratio {found.cpu_ratio}, memory ratio {found.memory_ratio}")


@host_app.command("remove")
def host_remove(host: str) -> None:
    """Forget a host that holds no VMs (its agent must join again to come back)."""
    with database() as db, db.transaction() as session:
        hosts.remove(session, hosts.find(session, host, lock=True))
    console.print(f"Removed host {host}.")


@host_app.command("check")
def host_check(as_json: JsonOption = False) -> None:
    """Check that every host's counters equal the sum of what is placed on it."""
    with database() as db, db.reading() as session:
        found = differences(session)
        count = len(session.scalars(select(Host.id)).all())
    rows = [
        {
            "host": d.host_name,
            "counter": d.counter,
            "recorded": d.recorded,
            "placed": d.allocated,
        }
        for d in found
    ]
    if as_json:
        show({"hosts": count, "differences": rows}, as_json=True)
    elif not rows:
        console.print(f"{count} hosts checked: every counter equals the sum of its placements.")
    else:
        listing(rows, ["host", "counter", "recorded", "placed"], as_json=False)
    if rows:
        fail(f"{len(rows)} counter(s) differ from what is placed")

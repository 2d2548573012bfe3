"""`nubis admin location …` and `nubis admin host …`: where hosts are, how they join,
whether they take VMs, and whether their counters add up; clients of
`/v1/admin/locations`, `/v1/admin/hosts` and `/v1/admin/counters`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from nubis.choices import Flooding
from nubis.cli.account import ProfileOption
from nubis.cli.client import client_of, part
from nubis.cli.output import JsonOption, console, fail, listing, show

location_app = typer.Typer(help="Locations: where hosts are.", no_args_is_help=True)
host_app = typer.Typer(help="Hosts: joining, states, checks.", no_args_is_help=True)

GIB = 1024**3


def _seconds(at: str) -> str:
    """An API time, to the second: what people read in a table or a log."""
    return datetime.fromisoformat(at).isoformat(timespec="seconds")


@location_app.command("create")
def location_create(
    name: str,
    prefix: Annotated[str, typer.Option(help="Its IPv6 prefix, e.g. 2001:db8:1::/48.")],
    display_name: Annotated[str | None, typer.Option(help="A name for people.")] = None,
    flooding: Annotated[
        Flooding, typer.Option(help="How VXLAN reaches the hosts of a network.")
    ] = Flooding.MULTICAST,
    profile: ProfileOption = None,
) -> None:
    body: dict[str, Any] = {"name": name, "prefix": prefix, "flooding": flooding.value}
    if display_name is not None:
        body["display_name"] = display_name
    made = client_of(profile).post("/v1/admin/locations", body)
    console.print(
        f"Created location {made['name']} ({made['prefix']}, {made['flooding']} flooding)."
    )


@location_app.command("list")
def location_list(as_json: JsonOption = False, profile: ProfileOption = None) -> None:
    rows = sorted(client_of(profile).every("/v1/admin/locations"), key=lambda loc: loc["name"])
    listing(rows, ["name", "display_name", "prefix", "flooding", "id"], as_json)


@location_app.command("set")
def location_set(
    name: str,
    flooding: Annotated[
        Flooding, typer.Option(help="How VXLAN reaches the hosts of the location's networks.")
    ],
    profile: ProfileOption = None,
) -> None:
    """Change how a location's networks flood; its hosts rebuild their VXLANs."""
    client = client_of(profile)
    path = f"/v1/admin/locations/{part(name)}"
    before = client.get(path)["flooding"]
    client.patch(path, {"flooding": flooding.value})
    console.print(
        f"{name} {'floods already' if before == flooding else 'now floods'} by {flooding}."
    )


@host_app.command("join-token")
def host_join_token(
    location: Annotated[str, typer.Option(help="The location the host joins.")],
    expires_in: Annotated[str, typer.Option(help="How long it may be used.")] = "1h",
    profile: ProfileOption = None,
) -> None:
    """A one-time token for `nubis agent --join-token`."""
    path = f"/v1/admin/locations/{part(location)}/join-tokens"
    console.print(client_of(profile).post(path, {"expires_in": expires_in})["secret"])


def _summary(host: dict[str, Any]) -> dict[str, Any]:
    """A host as people read it: each capacity as `used/total`, sizes in GiB."""
    return {
        "name": host["name"],
        "location": host["location"],
        "allocation_state": host["allocation_state"],
        "health": host["health"],
        "cores": f"{host['used_cores']}/{host['cores']}",
        "memory_gib": f"{host['used_memory_bytes'] / GIB:g}/{host['memory_bytes'] / GIB:g}",
        "hugepages": f"{host['used_hugepages']}/{host['hugepages']}",
        "disk_gib": f"{host['used_disk_bytes'] / GIB:g}/{host['disk_bytes'] / GIB:g}",
        "arch": host["arch"],
        "acceleration": host["acceleration"],
        "underlay": host["underlay_address"],
        "last_heartbeat": _seconds(host["last_heartbeat_at"]),
        "id": host["id"],
    }


@host_app.command("list")
def host_list(as_json: JsonOption = False, profile: ProfileOption = None) -> None:
    found = client_of(profile).every("/v1/admin/hosts")
    rows = [_summary(h) for h in sorted(found, key=lambda h: (h["location"], h["name"]))]
    columns = ["name", "location", "allocation_state", "health", "cores", "memory_gib"]
    listing(rows, [*columns, "disk_gib", "last_heartbeat"], as_json)


@host_app.command("show")
def host_show(host: str, as_json: JsonOption = False, profile: ProfileOption = None) -> None:
    """A host, its capacity and its event log."""
    client = client_of(profile)
    found = client.get(f"/v1/admin/hosts/{part(host)}")
    detail = _summary(found)
    detail["cpu_ratio"], detail["memory_ratio"] = found["cpu_ratio"], found["memory_ratio"]
    events = client.every(f"/v1/admin/hosts/{part(found['id'])}/events")
    detail["events"] = [f"{_seconds(e['at'])} {e['kind']}: {e['detail']}" for e in events]
    if as_json:
        show(detail, as_json=True)
        return
    log = detail.pop("events")
    show(detail, as_json=False)
    console.print("events:")
    for line in log:
        console.print(f"  {line}")


def _set_state(host: str, action: str, profile: str | None) -> None:
    answer = client_of(profile).post(f"/v1/admin/hosts/{part(host)}/{action}")
    state = answer["host"]["allocation_state"]
    console.print(f"{host} is {'now ' if answer['changed'] else 'already '}{state}")


@host_app.command("drain")
def host_drain(host: str, profile: ProfileOption = None) -> None:
    """Take no new VMs on the host; the ones there stay."""
    _set_state(host, "drain", profile)


@host_app.command("undrain")
def host_undrain(host: str, profile: ProfileOption = None) -> None:
    """Take new VMs again."""
    _set_state(host, "undrain", profile)


@host_app.command("maintenance")
def host_maintenance(host: str, profile: ProfileOption = None) -> None:
    """Take the host out of service for maintenance (no new VMs); `undrain` brings it back."""
    _set_state(host, "maintenance", profile)


@host_app.command("evacuate")
def host_evacuate(host: str, profile: ProfileOption = None) -> None:
    """Empty the host for maintenance: it takes no new VMs, and each of its VMs is
    stopped there, then recreated on another host (`show` has each step)."""
    done = client_of(profile).post(f"/v1/admin/hosts/{part(host)}/evacuate")
    console.print(
        f"Evacuating {host} ({done['allocation_state']}): "
        f"{done['moving']} VM(s) move to other hosts."
    )


@host_app.command("overcommit")
def host_overcommit(
    host: str,
    cpu: Annotated[float | None, typer.Option(help="vCPUs per core, e.g. 4.0.")] = None,
    memory: Annotated[float | None, typer.Option(help="Memory overcommit, e.g. 1.5.")] = None,
    profile: ProfileOption = None,
) -> None:
    """Set the host's overcommit ratios (1.0: none)."""
    body = {
        name: value
        for name, value in (("cpu_ratio", cpu), ("memory_ratio", memory))
        if value is not None
    }
    found = client_of(profile).patch(f"/v1/admin/hosts/{part(host)}", body)
    console.print(f"{host}: cpu ratio {found['cpu_ratio']}, memory ratio {found['memory_ratio']}")


@host_app.command("remove")
def host_remove(host: str, profile: ProfileOption = None) -> None:
    """Forget a host that holds no VMs (its agent must join again to come back)."""
    client_of(profile).delete(f"/v1/admin/hosts/{part(host)}")
    console.print(f"Removed host {host}.")


@host_app.command("check")
def host_check(as_json: JsonOption = False, profile: ProfileOption = None) -> None:
    """Check that every host's counters equal the sum of what is placed on it."""
    checked = client_of(profile).get("/v1/admin/counters")
    rows = [
        {
            "host": d["name"],
            "counter": d["counter"],
            "recorded": d["recorded"],
            "placed": d["placed"],
        }
        for d in checked["differences"]
    ]
    if as_json:
        show({"hosts": checked["hosts"], "differences": rows}, as_json=True)
    elif not rows:
        console.print(
            f"{checked['hosts']} hosts checked: every counter equals the sum of its placements."
        )
    else:
        listing(rows, ["host", "counter", "recorded", "placed"], as_json=False)
    if rows:
        fail(f"{len(rows)} counter(s) differ from what is placed")

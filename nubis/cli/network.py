"""`nubis network …`: a project's networks (VXLAN segments, with or without a /64)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from nubis.cli.account import ProfileOption
from nubis.cli.client import part, project_of, signed_in
from nubis.cli.output import JsonOption, console, emit_json, listing, show
from nubis.cli.project import ProjectOption

network_app = typer.Typer(help="Project networks.", no_args_is_help=True)

COLUMNS = ["name", "id", "ipam", "vni", "prefix", "location"]


class IpamMode(StrEnum):
    """The API's IPAM modes (see docs/networks.md)."""

    AUTO = "auto"
    MANUAL = "manual"
    NONE = "none"


def networks_path(project: str) -> str:
    return f"/v1/projects/{part(project)}/networks"


def _made(network: dict[str, Any]) -> str:
    where = f", {network['prefix']}" if network["prefix"] else ", no prefix"
    return (
        f"Created network {network['name']} ({network['id']}): ipam {network['ipam']}, "
        f"VNI {network['vni']}{where}, in {network['location']}."
    )


@network_app.command("create")
def network_create(
    name: str,
    ipam: Annotated[
        IpamMode,
        typer.Option(
            help="auto: a /64 announced to the VMs; manual: a /64, addresses not "
            "announced; none: plain layer 2."
        ),
    ] = IpamMode.AUTO,
    location: Annotated[
        str | None, typer.Option(help="Where it is (needed where there are several).")
    ] = None,
    project: ProjectOption = None,
    as_json: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Create a network; VMs join it with `vm create --network` or `vm nic add`."""
    client, chosen = signed_in(profile)
    body: dict[str, Any] = {"name": name, "ipam": ipam.value}
    if location is not None:
        body["location"] = location
    made = client.post(networks_path(project_of(chosen, project)), body)
    if as_json:
        emit_json(made)
    else:
        console.print(_made(made))


@network_app.command("list")
def network_list(
    project: ProjectOption = None, as_json: JsonOption = False, profile: ProfileOption = None
) -> None:
    client, chosen = signed_in(profile)
    listing(client.every(networks_path(project_of(chosen, project))), COLUMNS, as_json)


@network_app.command("show")
def network_show(
    name: Annotated[str, typer.Argument(help="Name or id.")],
    project: ProjectOption = None,
    as_json: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    client, chosen = signed_in(profile)
    show(client.get(f"{networks_path(project_of(chosen, project))}/{part(name)}"), as_json)


@network_app.command("delete")
def network_delete(
    name: Annotated[str, typer.Argument(help="Name or id.")],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Taken, as by the other deletes; never asked.")
    ] = False,
    project: ProjectOption = None,
    profile: ProfileOption = None,
) -> None:
    """Delete a network no VM is in (its /64 and firewall rules go with it).

    It does not ask first: a network in use is refused, and one without NICs holds
    nothing to lose but its rules."""
    del yes
    client, chosen = signed_in(profile)
    client.delete(f"{networks_path(project_of(chosen, project))}/{part(name)}")
    console.print(f"Deleted network {name}.")


def register(app: typer.Typer) -> None:
    app.add_typer(network_app, name="network")

"""`nubis firewall-rule …`: what may reach a VM's or a network's NICs from outside."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from nubis.cli.account import ProfileOption
from nubis.cli.client import Client, part, project_of, signed_in
from nubis.cli.output import JsonOption, console, emit_json, table
from nubis.cli.project import ProjectOption
from nubis.errors import InvalidInput

rule_app = typer.Typer(help="Firewall rules of VMs and networks.", no_args_is_help=True)


class Protocol(StrEnum):
    TCP = "tcp"
    UDP = "udp"
    ICMP = "icmp"
    """ICMPv6."""
    ANY = "any"


VmOption = Annotated[str | None, typer.Option("--vm", help="A VM: name or id.")]
NetworkOption = Annotated[str | None, typer.Option("--network", help="A network: name or id.")]


def _rules(project: str) -> str:
    return f"/v1/projects/{part(project)}/firewall-rules"


def _ports(rule: dict[str, Any]) -> str:
    low, high = rule["port_min"], rule["port_max"]
    if low is None:
        return "all"
    return str(low) if low == high else f"{low}-{high}"


def _names(client: Client, project: str, path: str) -> dict[str, str]:
    return {
        item["id"]: item["name"] for item in client.every(f"/v1/projects/{part(project)}/{path}")
    }


def _target(rule: dict[str, Any], vms: dict[str, str], networks: dict[str, str]) -> str:
    if rule["vm"]:
        return f"vm {vms.get(rule['vm'], rule['vm'])}"
    return f"network {networks.get(rule['network'], rule['network'])}"


@rule_app.command("add")
def rule_add(
    proto: Annotated[Protocol, typer.Option("--proto", help="tcp, udp, icmp (ICMPv6) or any.")],
    vm: VmOption = None,
    network: NetworkOption = None,
    port: Annotated[
        str | None, typer.Option(help="tcp and udp: a port (22) or a range (8000-8100).")
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="The IPv6 network it may come from (default ::/0).")
    ] = None,
    project: ProjectOption = None,
    as_json: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Let traffic in to one VM's project network NICs (--vm) or to every NIC of a
    network (--network)."""
    if (vm is None) == (network is None):
        raise InvalidInput("give --vm or --network (one of them)")
    client, chosen = signed_in(profile)
    body: dict[str, Any] = {"protocol": proto.value}
    optional = {"vm": vm, "network": network, "port": port, "source": source}
    body |= {name: value for name, value in optional.items() if value is not None}
    rule = client.post(_rules(project_of(chosen, project)), body)
    if as_json:
        emit_json(rule)
        return
    target = f"VM {vm}" if vm else f"network {network}"
    console.print(
        f"Added rule {rule['id']}: {rule['protocol']} port {_ports(rule)} from "
        f"{rule['source']} to {target}."
    )


@rule_app.command("list")
def rule_list(
    vm: VmOption = None,
    network: NetworkOption = None,
    project: ProjectOption = None,
    as_json: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """The project's rules, or only a VM's or a network's own."""
    client, chosen = signed_in(profile)
    where = project_of(chosen, project)
    found: list[Any] = []
    cursor: str | None = None
    while True:
        page = client.get(_rules(where), vm=vm, network=network, limit=500, cursor=cursor)
        found += page["items"]
        if (cursor := page["next_cursor"]) is None:
            break
    if as_json:
        emit_json(found)
        return
    vms, networks = _names(client, where, "vms"), _names(client, where, "networks")
    table(
        ["id", "to", "protocol", "ports", "source"],
        [
            [r["id"], _target(r, vms, networks), r["protocol"], _ports(r), r["source"]]
            for r in found
        ],
    )


@rule_app.command("rm")
def rule_rm(
    rule: Annotated[str, typer.Argument(help="The rule's id (fwr-…).")],
    project: ProjectOption = None,
    profile: ProfileOption = None,
) -> None:
    client, chosen = signed_in(profile)
    client.delete(f"{_rules(project_of(chosen, project))}/{part(rule)}")
    console.print(f"Removed firewall rule {rule}.")


def register(app: typer.Typer) -> None:
    app.add_typer(rule_app, name="firewall-rule")

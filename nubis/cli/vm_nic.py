"""`nubis vm nic …`: a VM's NICs in project networks, added and removed while it runs."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from nubis.cli.account import ProfileOption
from nubis.cli.client import part, project_of, signed_in
from nubis.cli.output import JsonOption, console, emit_json, table
from nubis.cli.project import ProjectOption

nic_app = typer.Typer(help="A VM's NICs in project networks.", no_args_is_help=True)

VmArgument = Annotated[str, typer.Argument(help="The VM: name or id.")]
NetworkArgument = Annotated[str, typer.Argument(help="The network: name or id.")]


def _vm_path(project: str, vm: str) -> str:
    return f"/v1/projects/{part(project)}/vms/{part(vm)}"


def first_address(vm: dict[str, Any]) -> str | None:
    """The address of the VM's first NIC that has one (NIC 0's, on its host's /64)."""
    return next((nic["address"] for nic in vm["nics"] if nic["address"]), None)


def nic_rows(vm: dict[str, Any]) -> list[list[Any]]:
    """A row per NIC: number, network (`host` for NIC 0), MAC, address."""
    return [
        [nic["number"], nic["network_name"] or "host", nic["mac"], nic["address"]]
        for nic in vm["nics"]
    ]


NIC_COLUMNS = ["nic", "network", "mac", "address"]


@nic_app.command("add")
def nic_add(
    vm: VmArgument,
    network: NetworkArgument,
    project: ProjectOption = None,
    as_json: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Give the VM a NIC in a network of its location; a running VM gets it at once."""
    client, chosen = signed_in(profile)
    answer = client.post(f"{_vm_path(project_of(chosen, project), vm)}/nics", {"network": network})
    if as_json:
        emit_json(answer)
        return
    nic = next(
        (n for n in answer["nics"] if network in (n["network"], n["network_name"])),
        answer["nics"][-1],
    )
    console.print(
        f"VM {answer['name']} has NIC {nic['number']} in network {nic['network_name']}"
        f" ({nic['mac']}, {nic['address'] or 'no address'})."
    )


@nic_app.command("rm")
def nic_rm(
    vm: VmArgument,
    network: NetworkArgument,
    project: ProjectOption = None,
    as_json: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Take the VM's NIC out of a network."""
    client, chosen = signed_in(profile)
    answer = client.request(
        "DELETE", f"{_vm_path(project_of(chosen, project), vm)}/nics/{part(network)}"
    )
    if as_json:
        emit_json(answer)
        return
    console.print(f"Removed VM {answer['name']}'s NIC in network {network}.")


@nic_app.command("list")
def nic_list(
    vm: VmArgument,
    project: ProjectOption = None,
    as_json: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """The VM's NICs: the host network's (0) and its project networks'."""
    client, chosen = signed_in(profile)
    found = client.get(_vm_path(project_of(chosen, project), vm))
    if as_json:
        emit_json(found["nics"])
        return
    table(NIC_COLUMNS, nic_rows(found))

"""`nubis vm …`: a project's virtual machines (the console is `vm_console.py`, ssh
`vm_ssh.py`, waiting `vm_wait.py`, NICs `vm_nic.py`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from nubis.cli import vm_console, vm_ssh, vm_wait
from nubis.cli.account import ProfileOption
from nubis.cli.client import Client, part, project_of, signed_in
from nubis.cli.output import JsonOption, console, emit_json, fail, show, table
from nubis.cli.project import ProjectOption
from nubis.cli.vm_nic import NIC_COLUMNS, first_address, nic_app, nic_rows
from nubis.errors import InvalidInput, NotFound

vm_app = typer.Typer(help="Virtual machines.", no_args_is_help=True)
vm_app.add_typer(nic_app, name="nic")

DEFAULT_TIMEOUT_SECONDS = 300.0

WaitOption = Annotated[
    bool, typer.Option("--wait", help="Wait until it is done, showing the VM's state.")
]
TimeoutOption = Annotated[
    float,
    typer.Option(
        "--timeout", min=0, help="With --wait: give up after this many seconds (exit code 124)."
    ),
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")]


def _vms(project: str) -> str:
    return f"/v1/projects/{part(project)}/vms"


def _size(count: int) -> str:
    """Bytes for people: `512 MiB`, `4 GiB`, `1.5 GiB`."""
    value, unit = float(count), "B"
    for larger in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{value:.0f} {unit}" if value.is_integer() else f"{value:.1f} {unit}"


# --- creating ------------------------------------------------------------------------


def _key_lines(path: Path) -> list[str]:
    """The public keys in a `.pub` (or authorized_keys-like) file."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(f"cannot read {path}: {error}") from None
    if "PRIVATE KEY" in text:
        raise InvalidInput(f"{path} is a private key: give its public half ({path}.pub)")
    lines = [line.strip() for line in text.splitlines()]
    keys = [line for line in lines if line and not line.startswith("#")]
    if not keys:
        raise InvalidInput(f"{path} holds no public key")
    return keys


def _public_keys(client: Client, project: str, given: Sequence[str]) -> list[str]:
    """Each --ssh-key: a public key file, else the name of one of the project's keys."""
    keys: list[str] = []
    for ref in given:
        path = Path(ref).expanduser()
        if path.is_file():
            keys += _key_lines(path)
            continue
        if os.sep in ref or ref.startswith("~") or ref.endswith(".pub"):
            raise InvalidInput(f"--ssh-key {ref}: no such file")
        try:
            found = client.get(f"/v1/projects/{part(project)}/ssh-keys/{part(ref)}")
        except NotFound:
            raise InvalidInput(
                f"--ssh-key {ref}: no such file, and project {project} has no SSH key of that name"
            ) from None
        keys.append(found["public_key"])
    return keys


def _user_data(path: Path) -> str:
    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.expanduser().read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(f"cannot read {path}: {error}") from None


@vm_app.command("create")
def vm_create(
    name: str,
    image: Annotated[str, typer.Option(help="An image of the project's or a public one.")],
    cores: Annotated[int | None, typer.Option(min=1, help="Virtual CPUs (default 1).")] = None,
    memory: Annotated[str | None, typer.Option(help="e.g. 512M, 4G (default 1G).")] = None,
    disk: Annotated[
        str | None, typer.Option(help="e.g. 20G (default: the image's virtual size).")
    ] = None,
    ssh_key: Annotated[
        list[str] | None,
        typer.Option(
            "--ssh-key",
            help="A public key file, or the name of a project key; repeatable "
            "(default: all of the project's keys).",
        ),
    ] = None,
    user_data: Annotated[
        Path | None, typer.Option(help="A cloud-init user-data file (- for stdin).")
    ] = None,
    group: Annotated[
        str | None, typer.Option(help="Anti-affinity group: no two of its VMs share a host.")
    ] = None,
    location: Annotated[
        str | None, typer.Option(help="Where it runs (needed where there are several).")
    ] = None,
    network: Annotated[
        list[str] | None,
        typer.Option(
            "--network", help="A project network to give it a NIC in; repeatable (NICs 1, 2, …)."
        ),
    ] = None,
    no_ha: Annotated[
        bool,
        typer.Option(
            "--no-ha",
            help="Do not recreate it on another host when its host dies: it stays stopped.",
        ),
    ] = False,
    wait: WaitOption = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
    project: ProjectOption = None,
    as_json: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Create a VM from an image; with --wait, until it runs."""
    client, chosen = signed_in(profile)
    where = project_of(chosen, project)
    body: dict[str, Any] = {"name": name, "image": image}
    optional = {
        "cores": cores,
        "memory": memory,
        "disk": disk,
        "location": location,
        "group": group,
    }
    body |= {field: value for field, value in optional.items() if value is not None}
    if network:
        body["networks"] = network
    if no_ha:
        body["ha"] = False
    if ssh_key:
        body["ssh_keys"] = _public_keys(client, where, ssh_key)
    if user_data is not None:
        body["user_data"] = _user_data(user_data)
    vm = client.post(_vms(where), body)
    if not as_json:
        console.print(
            f"Creating VM {vm['name']} ({vm['id']}) at {first_address(vm) or 'no address'}."
        )
    if wait:
        vm = vm_wait.wait(client, f"{_vms(where)}/{part(vm['id'])}", vm["name"], "running", timeout)
        if not as_json:
            console.print(f"VM {vm['name']} is running.")
    if as_json:
        emit_json(vm)


# --- reading -------------------------------------------------------------------------


def _row(vm: dict[str, Any]) -> list[Any]:
    memory = _size(vm["memory_bytes"])
    return [
        vm["name"],
        vm["id"],
        vm["state"],
        vm["cores"],
        memory,
        vm["host_name"],
        first_address(vm),
    ]


@vm_app.command("list")
def vm_list(
    project: ProjectOption = None, as_json: JsonOption = False, profile: ProfileOption = None
) -> None:
    """The project's VMs and their states."""
    client, chosen = signed_in(profile)
    found = client.every(_vms(project_of(chosen, project)))
    if as_json:
        emit_json(found)
        return
    columns = ["name", "id", "state", "cores", "memory", "host", "address"]
    table(columns, [_row(vm) for vm in found])


@vm_app.command("show")
def vm_show(
    name: Annotated[str, typer.Argument(help="Name or id.")],
    project: ProjectOption = None,
    as_json: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """A VM's fields and its NICs."""
    client, chosen = signed_in(profile)
    vm = client.get(f"{_vms(project_of(chosen, project))}/{part(name)}")
    if as_json:
        emit_json(vm)
        return
    fields = {
        "name": vm["name"],
        "id": vm["id"],
        "state": vm["state"],
        "detail": vm["detail"] or None,
        "cores": vm["cores"],
        "memory": _size(vm["memory_bytes"]),
        "disk": _size(vm["disk_bytes"]),
        "image": vm["image"],
        "host": vm["host_name"],
        "ha": vm["ha"],
        "created_at": vm["created_at"],
    }
    show(fields, as_json=False)
    table(NIC_COLUMNS, nic_rows(vm))


@vm_app.command("events")
def vm_events(
    name: Annotated[str, typer.Argument(help="Name or id.")],
    project: ProjectOption = None,
    as_json: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """The VM's event log: where it was placed, its moves, its waits for capacity."""
    client, chosen = signed_in(profile)
    found = client.every(f"{_vms(project_of(chosen, project))}/{part(name)}/events")
    if as_json:
        emit_json(found)
        return
    table(["at", "kind", "detail"], [[e["at"], e["kind"], e["detail"]] for e in found])


# --- changing ------------------------------------------------------------------------


def _ask(
    action: str, goal: str, name: str, wait: bool, timeout: float, project: str | None,
    as_json: bool, profile: str | None,
) -> None:  # fmt: skip
    client, chosen = signed_in(profile)
    base = _vms(project_of(chosen, project))
    vm = client.post(f"{base}/{part(name)}/{action}")
    if not as_json:
        console.print(f"VM {vm['name']} is {vm['state']}.")
    if wait:
        path = f"{base}/{part(vm['id'])}"
        vm = vm_wait.wait(client, path, vm["name"], goal, timeout, reboots=vm["reboots"])
        if not as_json:
            console.print(f"VM {vm['name']} is {vm['state']}.")
    if as_json:
        emit_json(vm)


@vm_app.command("start")
def vm_start(
    name: str,
    wait: WaitOption = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
    project: ProjectOption = None,
    as_json: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Start a stopped VM; with --wait, until it runs."""
    _ask("start", "running", name, wait, timeout, project, as_json, profile)


@vm_app.command("stop")
def vm_stop(
    name: str,
    wait: WaitOption = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
    project: ProjectOption = None,
    as_json: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Power the VM off (ACPI, forced if the guest does not stop in time)."""
    _ask("stop", "stopped", name, wait, timeout, project, as_json, profile)


@vm_app.command("reboot")
def vm_reboot(
    name: str,
    wait: WaitOption = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
    project: ProjectOption = None,
    as_json: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Reboot a running VM; with --wait, until it runs again."""
    _ask("reboot", vm_wait.REBOOTED, name, wait, timeout, project, as_json, profile)


@vm_app.command("delete")
def vm_delete(
    name: str,
    yes: YesOption = False,
    wait: WaitOption = False,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_SECONDS,
    project: ProjectOption = None,
    profile: ProfileOption = None,
) -> None:
    """Delete a VM and its disk; with --wait, until it is gone."""
    client, chosen = signed_in(profile)
    base = _vms(project_of(chosen, project))
    if not yes:
        if not sys.stdin.isatty():
            fail(f"not deleting VM {name} unasked: there is no terminal to ask at; give --yes")
        typer.confirm(f"Delete VM {name} and its disk?", abort=True)
    vm = client.request("DELETE", f"{base}/{part(name)}")
    console.print(f"VM {vm['name']} is {vm['state']}.")
    if wait:
        vm_wait.wait(client, f"{base}/{part(vm['id'])}", vm["name"], vm_wait.GONE, timeout)
        console.print(f"VM {vm['name']} is gone.")


def register(app: typer.Typer) -> None:
    vm_app.command("console")(vm_console.vm_console)
    vm_app.command("log")(vm_console.vm_log)
    ssh_settings = {"allow_extra_args": True, "ignore_unknown_options": True}
    vm_app.command("ssh", context_settings=ssh_settings)(vm_ssh.vm_ssh)
    app.add_typer(vm_app, name="vm")

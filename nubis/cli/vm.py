"""`nubis vm …`: a project's virtual machines, their serial console, and SSH into them."""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from nubis.cli.account import ProfileOption
from nubis.cli.client import Client, part, project_of, signed_in
from nubis.cli.output import JsonOption, console, emit_json, errors, fail, show, table
from nubis.cli.profile import config_path
from nubis.cli.project import ProjectOption
from nubis.cli.vm_nic import NIC_COLUMNS, nic_app, nic_rows
from nubis.errors import InvalidInput, NotFound

vm_app = typer.Typer(help="Virtual machines.", no_args_is_help=True)
vm_app.add_typer(nic_app, name="nic")

POLL_SECONDS = 0.5
FOLLOW_SECONDS = 1.0
DEFAULT_TIMEOUT_SECONDS = 300.0
REBOOT_GRACE_SECONDS = 10.0
TIMED_OUT = 124
"""The exit code of a --wait that ran out of time, as timeout(1) has it."""
GONE = "gone"
"""The goal of waiting on a delete: the VM no longer exists."""
REBOOTED = "rebooted"
CONNECTION_ATTEMPTS = 30
"""Seconds `vm ssh` keeps trying to connect: a guest that just started is still booting."""
IDENTITIES = ("id_ed25519", "id_ecdsa", "id_rsa")
"""Private keys tried, in this order, when `vm ssh` is given none."""

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


def _address(vm: dict[str, Any]) -> str | None:
    return next((nic["address"] for nic in vm["nics"] if nic["address"]), None)


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
        console.print(f"Creating VM {vm['name']} ({vm['id']}) at {_address(vm) or 'no address'}.")
    if wait:
        vm = _wait(client, f"{_vms(where)}/{part(vm['id'])}", vm["name"], "running", timeout)
        if not as_json:
            console.print(f"VM {vm['name']} is running.")
    if as_json:
        emit_json(vm)


# --- reading -------------------------------------------------------------------------


def _row(vm: dict[str, Any]) -> list[Any]:
    memory = _size(vm["memory_bytes"])
    return [vm["name"], vm["id"], vm["state"], vm["cores"], memory, vm["host"], _address(vm)]


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
        "host": vm["host"],
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
        vm = _wait(client, f"{base}/{part(vm['id'])}", vm["name"], goal, timeout)
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
    _ask("reboot", REBOOTED, name, wait, timeout, project, as_json, profile)


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
        _wait(client, f"{base}/{part(vm['id'])}", vm["name"], GONE, timeout)
        console.print(f"VM {vm['name']} is gone.")


# --- waiting -------------------------------------------------------------------------


@contextmanager
def _spinner(text: str) -> Iterator[Any]:
    """A status line with a spinner on stderr, where there is a terminal to show it."""
    if not errors.is_terminal:
        yield None
        return
    with errors.status(text) as status:
        yield status


def _reached(goal: str, state: str, seen: set[str], waited: float) -> bool:
    if goal != REBOOTED:
        return state == goal
    # A reboot shows `rebooting` only once the VM's prog took the request in, so right
    # after asking the VM may still say `running` from before. It is rebooted once it
    # has been seen rebooting and runs again, or, if that came and went between two
    # looks, once it runs after a grace period.
    return state == "running" and ("rebooting" in seen or waited >= REBOOT_GRACE_SECONDS)


def _wait(client: Client, path: str, name: str, goal: str, timeout: float) -> dict[str, Any]:
    """Poll the VM at `path` until it is `goal`; the VM as last seen ({} once gone).
    A VM that fails ends the command (exit 1), as does running out of time (exit 124)."""
    started = time.monotonic()
    seen: set[str] = set()
    vm: dict[str, Any] = {}
    state = "unknown"
    with _spinner(f"Waiting for VM {name}") as status:
        while True:
            waited = time.monotonic() - started
            try:
                vm = client.get(path)
            except NotFound:
                if goal == GONE:
                    return {}
                raise NotFound(f"VM {name} was deleted while waiting for it") from None
            state = vm["state"]
            seen.add(state)
            if _reached(goal, state, seen, waited):
                return vm
            if state == "failed":
                break
            if waited >= timeout:
                break
            if status is not None:
                status.update(Text(f"Waiting for VM {name} to be {goal}: {state} ({waited:.0f} s)"))
            time.sleep(POLL_SECONDS)
    if state == "failed":
        fail(f"VM {name} failed: {vm['detail'] or 'no reason given'}")
    fail(f"VM {name} is still {state}, not {goal}, after {timeout:g} s", TIMED_OUT)


# --- the console ---------------------------------------------------------------------


def unseen(before: str, after: str) -> str:
    """What of the console tail `after` came since the tail `before`.

    The tail is a window that slides as the console grows, so the new part starts
    where the longest end of `before` that begins `after` stops. With no overlap, all
    of `after` is new (more was written than the window holds, or the log restarted).
    """
    if not before:
        return after
    # The KMP prefix function of after + a separator + before: its last value is the
    # longest prefix of `after` that ends `before`, found in linear time.
    joined: list[str | None] = [*after, None, *before]
    prefix = [0] * len(joined)
    for i in range(1, len(joined)):
        k = prefix[i - 1]
        while k and joined[i] != joined[k]:
            k = prefix[k - 1]
        if joined[i] == joined[k]:
            k += 1
        prefix[i] = k
    return after[prefix[-1] :]


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _console(name: str, follow: bool, project: str | None, profile: str | None) -> None:
    client, chosen = signed_in(profile)
    path = f"{_vms(project_of(chosen, project))}/{part(name)}/console"
    shown = client.text(path)
    if not follow:
        _write(shown if not shown or shown.endswith("\n") else f"{shown}\n")
        return
    _write(shown)
    while True:
        time.sleep(FOLLOW_SECONDS)
        latest = client.text(path)
        _write(unseen(shown, latest))
        shown = latest


@vm_app.command("console")
def vm_console(
    name: str,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing what comes, until Ctrl-C.")
    ] = False,
    project: ProjectOption = None,
    profile: ProfileOption = None,
) -> None:
    """Print the VM's serial console (read-only); --follow keeps printing what comes.

    It is the last 16 KiB its host reported. Nothing typed reaches the VM: for a shell,
    use `nubis vm ssh`. --follow prints only what is new, until Ctrl-C."""
    _console(name, follow, project, profile)


@vm_app.command("log")
def vm_log(name: str, project: ProjectOption = None, profile: ProfileOption = None) -> None:
    """Print the VM's serial console log once: the last 16 KiB its host reported."""
    _console(name, False, project, profile)


# --- ssh -----------------------------------------------------------------------------


def ssh_address(vm: dict[str, Any]) -> str:
    """The IPv6 address of the VM's first NIC that has one."""
    found = _address(vm)
    if found is None:
        raise InvalidInput(f"VM {vm['name']} has no address")
    if ipaddress.ip_address(found).version != 6:
        raise InvalidInput(f"VM {vm['name']}'s address {found} is not IPv6")
    return found


def ssh_argv(
    address: str,
    vm_id: str,
    *,
    user: str,
    identity: Path | None,
    known_hosts: Path,
    extra: Sequence[str] = (),
) -> list[str]:
    """The `ssh` command line to reach a VM.

    Its host key is filed under the VM's id (HostKeyAlias) in a known_hosts file of the
    CLI's own: VM addresses are reused, and a new VM at an old address must not trip
    over the key of the one before. A first key is taken (accept-new); a changed one
    for the same VM is refused, as ssh does. A VM that runs may still be booting, so
    the connection is tried for a while (once a second) before ssh gives up. `extra`
    follows the destination, where ssh reads further options and then the remote
    command.
    """
    argv = [
        "ssh",
        "-o", f"ConnectionAttempts={CONNECTION_ATTEMPTS}",
        "-o", f"HostKeyAlias={vm_id}",
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "StrictHostKeyChecking=accept-new",
    ]  # fmt: skip
    if identity is not None:
        argv += ["-i", str(identity)]
    return [*argv, "-l", user, str(ipaddress.IPv6Address(address)), *extra]


def default_identity(home: Path) -> Path | None:
    """The first of the usual private keys in `home`/.ssh that exists."""
    return next(
        (home / ".ssh" / name for name in IDENTITIES if (home / ".ssh" / name).is_file()), None
    )


@vm_app.command("ssh", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def vm_ssh(
    ctx: typer.Context,
    name: str,
    identity: Annotated[
        Path | None,
        typer.Option("--identity", help="Your private key (default: ~/.ssh/id_ed25519, …)."),
    ] = None,
    user: Annotated[str, typer.Option("--user", help="Who to log in as.")] = "root",
    project: ProjectOption = None,
    profile: ProfileOption = None,
) -> None:
    """SSH into the VM at its IPv6 address.

    What follows `--` goes to ssh: its options, then the remote command, e.g.
    `nubis vm ssh web1 -- -v uptime`. Host keys are kept per VM in known_hosts next to
    the CLI's config."""
    client, chosen = signed_in(profile)
    vm = client.get(f"{_vms(project_of(chosen, project))}/{part(name)}")
    if vm["state"] != "running":
        raise InvalidInput(f"VM {vm['name']} is {vm['state']}, not running")
    if identity is not None:
        identity = identity.expanduser()
        if not identity.is_file():
            raise InvalidInput(f"--identity {identity}: no such file")
    else:
        identity = default_identity(Path.home())
    program = shutil.which("ssh")
    if program is None:
        raise InvalidInput("ssh is not installed (the OpenSSH client)")
    known_hosts = config_path().parent / "known_hosts"
    known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    argv = ssh_argv(
        ssh_address(vm), vm["id"], user=user, identity=identity, known_hosts=known_hosts,
        extra=ctx.args,
    )  # fmt: skip
    sys.stdout.flush()
    os.execv(program, argv)


def register(app: typer.Typer) -> None:
    app.add_typer(vm_app, name="vm")

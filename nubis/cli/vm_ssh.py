"""`nubis vm ssh`: into a VM at its IPv6 address, with its host key kept per VM."""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from nubis.cli.account import ProfileOption
from nubis.cli.client import part, project_of, signed_in
from nubis.cli.profile import config_path
from nubis.cli.project import ProjectOption
from nubis.cli.vm_nic import first_address
from nubis.errors import InvalidInput

CONNECTION_ATTEMPTS = 30
"""Seconds `vm ssh` keeps trying to connect: a guest that just started is still booting."""
IDENTITIES = ("id_ed25519", "id_ecdsa", "id_rsa")
"""Private keys tried, in this order, when `vm ssh` is given none."""


def ssh_address(vm: dict[str, Any]) -> str:
    """The IPv6 address of the VM's first NIC that has one."""
    found = first_address(vm)
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


def vm_ssh(
    ctx: typer.Context,
    name: str,
    identity: Annotated[
        Path | None,
        typer.Option("--identity", help="Your private key (default: ~/.ssh/id_ed25519, …)."),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option("--user", help="Who to log in as (default: the image's login user)."),
    ] = None,
    project: ProjectOption = None,
    profile: ProfileOption = None,
) -> None:
    """SSH into the VM at its IPv6 address.

    What follows `--` goes to ssh: its options, then the remote command, e.g.
    `nubis vm ssh web1 -- -v uptime`. Host keys are kept per VM in known_hosts next to
    the CLI's config."""
    client, chosen = signed_in(profile)
    vm = client.get(f"/v1/projects/{part(project_of(chosen, project))}/vms/{part(name)}")
    if vm["state"] != "running":
        raise InvalidInput(f"VM {vm['name']} is {vm['state']}, not running")
    if user is None:
        image = client.get(f"/v1/projects/{part(project_of(chosen, project))}/images/{vm['image']}")
        user = str(image["login_user"])
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

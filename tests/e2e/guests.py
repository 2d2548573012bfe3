"""What e2e tests do with VMs as a user would: create them, wait for their guests, run
commands in them over SSH. Every cloud made by the `vm_cloud` fixture (conftest.py)
has the tiny guest image as the public image `tiny` and the user's SSH key."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from nubis.cli.vm_console import unseen
from nubis.guestimage import guest
from tests.e2e.cloud import Cloud, Host
from tests.e2e.conftest import requires_root
from tests.e2e.processes import checked

TOOLS = (
    "qemu-system-x86_64", "qemu-img", "mkfs.vfat", "mcopy", "syslinux", "apt-get", "dpkg-deb",
    "ip", "nft", "radvd", "ssh", "ssh-keygen",
)  # fmt: skip
"""What the tiny image's build, the hosts and the user's SSH need."""
NEEDS_GUESTS = [
    requires_root,
    pytest.mark.slow,
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in TOOLS), reason=f"needs {', '.join(TOOLS)}"
    ),
]
"""The marks of a test module that runs guests."""

IMAGE = "tiny"
KEY = "id_ed25519"
BOOT_SECONDS = 90.0
"""From QEMU's start to the guest's `ssh ready` (about 12 s under TCG, alone)."""
SSH_SECONDS = 30.0
POLL_SECONDS = 0.2
"""The first pause between two looks of `wait_until`; each next one is longer, up to
POLL_MAX_SECONDS. A look is often a `nubis` command, a Python start of its own: looked
at back to back, it would take a core from the guests that a test waits for."""
POLL_MAX_SECONDS = 1.0
READY = guest.READY_MARKER

T = TypeVar("T")


def wait_until(what: str, found: Callable[[], T | None], timeout: float) -> T:
    """`found()` once it is neither None nor False; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    pause = POLL_SECONDS
    while True:
        value = found()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(pause)
        pause = min(pause * 1.5, POLL_MAX_SECONDS)


def key_of(cloud: Cloud, who: str = "user") -> Path:
    """The private half of the SSH key in `who`'s project."""
    return cloud.work_dir / (KEY if who == "user" else f"{KEY}-{who}")


def add_key(cloud: Cloud, who: str = "user") -> None:
    """Make `who` an SSH key and put its public half in their project."""
    key = key_of(cloud, who)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{who}@e2e", "-f", str(key)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    checked(cloud.cli("ssh-key", "add", "laptop", f"{key}.pub", operator=who == "operator"))


def create(
    cloud: Cloud, name: str, *extra: str, image: str = IMAGE, operator: bool = False
) -> dict[str, Any]:
    vm: dict[str, Any] = cloud.cli_json(
        "vm", "create", name, "--image", image, "--cores", "1", "--memory", "256M", *extra,
        operator=operator,
    )  # fmt: skip
    return vm


def create_together(
    cloud: Cloud, names: tuple[str, ...], *extra: str, image: str = IMAGE
) -> list[dict[str, Any]]:
    """VMs created at once, each with --wait (each CLI run costs a Python start-up)."""
    with ThreadPoolExecutor(len(names)) as pool:
        return list(
            pool.map(lambda name: create(cloud, name, "--wait", *extra, image=image), names)
        )


def vms(cloud: Cloud, *, operator: bool = False) -> dict[str, dict[str, Any]]:
    return {vm["name"]: vm for vm in cloud.cli_json("vm", "list", operator=operator)}


def console(cloud: Cloud, name: str, *, operator: bool = False) -> str:
    return checked(cloud.cli("vm", "log", name, operator=operator))


def wait_ready(cloud: Cloud, name: str, since: str = "", *, operator: bool = False) -> str:
    """The console once the guest said `ssh ready` after the console tail `since`."""

    def ready() -> str | None:
        text = console(cloud, name, operator=operator)
        return text if READY in unseen(since, text) else None

    return wait_until(f"{name} says {READY!r} on its console", ready, BOOT_SECONDS)


def ssh_run(
    cloud: Cloud, name: str, *command: str, operator: bool = False
) -> subprocess.CompletedProcess[str]:
    """`command` run in the guest once, with `nubis vm ssh`."""
    who = "operator" if operator else "user"
    argv = ["vm", "ssh", name, "--identity", str(key_of(cloud, who)), "--",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", *command]  # fmt: skip
    return cloud.cli(*argv, operator=operator)


def ssh(cloud: Cloud, name: str, *command: str, operator: bool = False) -> str:
    """What `command` printed, run with `nubis vm ssh` (tried again while the guest's
    address is still settling)."""
    last: list[subprocess.CompletedProcess[str]] = []

    def answered() -> str | None:
        done = ssh_run(cloud, name, *command, operator=operator)
        last[:] = [done]
        return done.stdout if done.returncode == 0 else None

    try:
        return wait_until(f"ssh {name} {' '.join(command)}", answered, SSH_SECONDS)
    except AssertionError as error:
        raise AssertionError(f"{error}: {last[0].stderr.strip()}") from None


def host_of(cloud: Cloud, vm: dict[str, Any]) -> Host:
    names = {row["id"]: row["name"] for row in cloud.admin_json("host", "list")}
    return cloud.host(names[vm["host"]])


def create_on(
    cloud: Cloud, host: Host, names: tuple[str, ...], *extra: str
) -> list[dict[str, Any]]:
    """VMs created at once (with --wait) on `host`: the other hosts are drained while
    they are placed, and take VMs again afterwards."""
    others = [other.name for other in cloud.hosts.values() if other is not host]

    def each(action: str) -> None:
        with ThreadPoolExecutor(len(others) or 1) as pool:
            for done in pool.map(lambda name: cloud.admin("host", action, name), others):
                checked(done)

    each("drain")
    try:
        made = create_together(cloud, names, *extra)
    finally:
        each("undrain")
    for vm in made:
        assert host_of(cloud, vm) is host, f"{vm['name']} is not on {host.name}"
    return made


def events(cloud: Cloud, name: str, *, operator: bool = False) -> list[dict[str, Any]]:
    """The VM's event log (`nubis vm events`): each with `at`, `kind` and `detail`."""
    found: list[dict[str, Any]] = cloud.cli_json("vm", "events", name, operator=operator)
    return found


def forget_host_key(cloud: Cloud, vm_id: str, who: str = "user") -> None:
    """Remove the VM's host key from the CLI's known_hosts, as its user must once the
    VM was recreated on another host: a new disk from its image, a new host key."""
    known_hosts = cloud.config_dir(who) / "known_hosts"
    if known_hosts.exists():
        subprocess.run(
            ["ssh-keygen", "-R", vm_id, "-f", str(known_hosts)],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip

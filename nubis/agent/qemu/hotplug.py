"""A running VM's project NICs made those of its spec, through QMP, a step per call.

NIC `n` >= 1 is the device `nic<n>` on root port `port<n>`, on the tap netdev `net<n>`
(see `argv`), whether it was there at boot or plugged in later; NIC 0 is never touched.

Plugging in is immediate: `netdev_add`, then `device_add`. Unplugging needs the guest:
`device_del` asks it to let go of the device, and only once QEMU has removed the device
may its netdev go (`netdev_del`). Nothing is waited for here; `sync_nics` says whether
an unplug is still under way, and a later call completes it (or asks the guest again,
since QEMU lets a request that went unanswered be repeated after a few seconds).

Every call starts from what QEMU has now, so an agent that crashed between two steps
simply calls again; an answer saying that a step was done already is no error. The one
thing QEMU does not show, that a device was asked to go, is kept in the VM's
`unplugging` file (written before the asking): a NIC wanted again before its old
device is gone must wait for it and be plugged in anew.

What QEMU has is read from two answers: `qom-list /machine/peripheral` (which devices
exist, by id) and HMP `info network` (each netdev with its tap, each NIC with its MAC),
as QMP in QEMU 7.2 has no command that lists netdevs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from nubis.agent.qemu import QemuError, process
from nubis.agent.qemu.argv import (
    ACCELERATIONS,
    NIC_NUMBERS,
    device_id,
    netdev,
    netdev_id,
    nic_device,
)
from nubis.agent.qemu.monitor import CommandRefused, Monitor
from nubis.agent.qemu.paths import VmPaths, write_atomically
from nubis.protocol import Nic, VmSpec

PERIPHERALS = "/machine/peripheral"

_DEVICE = re.compile(r"^nic(\d+)$")
_NETDEV = re.compile(r"^net(\d+)$")
# `info network`: a NIC at the start of a line, its netdev under it after ` \ `; a
# netdev that no NIC uses stands alone.
_HMP_ENTRY = re.compile(r"^(?:\s*\\\s*)?(?P<id>[\w.-]+):\s*(?P<options>\S*)")

_DONE_ALREADY = {
    "netdev_add": ("Duplicate ID",),
    "device_add": ("Duplicate device ID",),
    "device_del": ("not found", "already in the process of unplug"),
    "netdev_del": ("not found",),
}
"""What QEMU says when a step was taken before (by an earlier call, maybe by an agent
that then crashed): the step is done. (A `device_add` whose port is "not found" is an
error: the VM was started without spare ports.)"""


class Qmp(Protocol):
    """What runs QMP commands: a `Monitor` (or a test's stand-in for QEMU)."""

    def execute(self, command: str, arguments: Mapping[str, object] | None = None) -> object: ...


@dataclass(frozen=True)
class Present:
    """The project NICs QEMU has: device numbers (with their MAC, if known) and netdev
    numbers (with their tap, if known)."""

    devices: Mapping[int, str | None] = field(default_factory=dict)
    netdevs: Mapping[int, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    command: str
    arguments: Mapping[str, object]


@dataclass(frozen=True)
class Plan:
    steps: list[Step]
    going: frozenset[int]
    """The NICs whose devices are asked to go and are not gone yet: call again later."""


def present(peripherals: Iterable[Mapping[str, object]], network: str) -> Present:
    """What QEMU has, from `qom-list /machine/peripheral` and HMP `info network`."""
    devices: dict[int, str | None] = {}
    for entry in peripherals:
        match = _DEVICE.match(str(entry.get("name", "")))
        if match and int(match[1]) in NIC_NUMBERS:
            devices[int(match[1])] = None
    netdevs: dict[int, str | None] = {}
    for line in network.splitlines():
        found = _HMP_ENTRY.match(line)
        if found is None:
            continue
        name, options = found["id"], found["options"].split(",")
        values = dict(part.split("=", 1) for part in options if "=" in part)
        if (device := _DEVICE.match(name)) and int(device[1]) in devices:
            devices[int(device[1])] = values.get("macaddr")
        elif (backend := _NETDEV.match(name)) and int(backend[1]) in NIC_NUMBERS:
            netdevs[int(backend[1])] = values.get("ifname")
    return Present(devices, netdevs)


def plan(desired: Iterable[Nic], have: Present, kvm: bool, asked: Iterable[int] = ()) -> Plan:
    """The QMP commands that take `have` one step nearer to the project NICs `desired`.

    `asked`: the NICs asked to go before (by number). Such a NIC is gone only once its
    device is, even if it is wanted again meanwhile: then it is plugged in anew. So is a
    NIC whose device has another MAC, or whose netdev another tap: a number can come
    back for another network.
    """
    wanted = {nic.number: nic for nic in desired if nic.number != 0}
    earlier = set(asked)
    steps: list[Step] = []
    going: set[int] = set()
    for number in NIC_NUMBERS:
        nic = wanted.get(number)
        has_device = number in have.devices
        has_netdev = number in have.netdevs
        if has_device:
            if number not in earlier and nic is not None and _matches(nic, have, number):
                continue
            steps.append(Step("device_del", {"id": device_id(number)}))
            going.add(number)
            continue
        if has_netdev and (nic is None or have.netdevs[number] not in (None, nic.tap)):
            steps.append(Step("netdev_del", {"id": netdev_id(number)}))
            has_netdev = False
        if nic is None:
            continue
        if not has_netdev:
            steps.append(Step("netdev_add", netdev(nic, kvm)))
        steps.append(Step("device_add", nic_device(nic)))
    return Plan(steps, frozenset(going))


def _matches(nic: Nic, have: Present, number: int) -> bool:
    if number not in have.netdevs:
        # Its backend is gone (deleted by hand?): the device carries no traffic.
        return False
    mac, tap = have.devices[number], have.netdevs[number]
    return (mac is None or mac.lower() == nic.mac) and (tap is None or tap == nic.tap)


def sync_nics(spec: VmSpec, paths: VmPaths, acceleration: str) -> bool:
    """Plug in and unplug the running VM's project NICs towards `spec.nics`.

    Returns True while an unplug is under way (call again later), False once QEMU has
    exactly the NICs asked for. The taps of the NICs to plug in must exist. Raises
    MonitorError if QMP cannot be reached or refuses a step for another reason (e.g.
    `Bus 'port1' not found`: the VM was started before it had spare ports), QemuError
    if the VM does not run.

    The NICs asked to go are kept in the VM's `unplugging` file with the pid of the
    QEMU asked, so that a NIC wanted again before its old device is gone is plugged in
    anew, also by an agent that restarted meanwhile.
    """
    if acceleration not in ACCELERATIONS:
        raise ValueError(f"acceleration must be one of {ACCELERATIONS}, not {acceleration!r}")
    qemu = process.pid(paths)
    if qemu is None:
        raise QemuError(f"cannot change the NICs of {spec.id}: it is not running")

    def remember(going: frozenset[int]) -> None:
        if going:
            numbers = " ".join(str(number) for number in sorted(going))
            write_atomically(paths.unplugging, f"{qemu} {numbers}\n")
        else:
            paths.unplugging.unlink(missing_ok=True)

    return bool(
        converge(
            Monitor(paths.qmp),
            spec.nics,
            kvm=acceleration == "kvm",
            asked=_asked(paths, qemu),
            remember=remember,
        )
    )


def _asked(paths: VmPaths, qemu: int) -> frozenset[int]:
    """The NICs this QEMU was asked to let go of, from the `unplugging` file."""
    try:
        first, *numbers = paths.unplugging.read_text().split()
        if int(first) == qemu:
            return frozenset(int(number) for number in numbers)
    except (FileNotFoundError, ValueError):
        pass
    return frozenset()


def converge(
    monitor: Qmp,
    nics: Sequence[Nic],
    *,
    kvm: bool,
    asked: Iterable[int] = (),
    remember: Callable[[frozenset[int]], None] = lambda going: None,
) -> frozenset[int]:
    """One pass of `sync_nics` through `monitor`: read what QEMU has, take the steps.

    Returns the NICs whose devices are still to go; `remember` is told them before any
    step is taken, and is given them as `asked` by the next pass.
    """
    peripherals = monitor.execute("qom-list", {"path": PERIPHERALS})
    network = monitor.execute("human-monitor-command", {"command-line": "info network"})
    if not isinstance(peripherals, list) or not isinstance(network, str):
        raise CommandRefused(
            "QMP answered qom-list or info network oddly", f"{peripherals!r} {network!r}"
        )
    have = present([entry for entry in peripherals if isinstance(entry, dict)], network)
    steps = plan(nics, have, kvm, asked)
    remember(steps.going)
    for step in steps.steps:
        try:
            monitor.execute(step.command, step.arguments)
        except CommandRefused as refused:
            if not any(words in refused.reason for words in _DONE_ALREADY[step.command]):
                raise
    return steps.going

"""Hosts that fail, end to end: real QEMU guests under TCG on three hosts that are
network namespaces (docs/hosts.md, Failure, fencing and evacuation).

- A host that loses its power: its VMs run again on the other hosts, with their ids,
  names, MACs and project network addresses.
- A host cut off the underlay: it stops its own VMs (it fenced) before the control
  plane declares it dead and recreates them elsewhere; when it comes back it runs
  nothing stale and takes new VMs.
- The control plane stopped for three dead windows: no VM stops, moves or restarts,
  and no host is declared dead when it returns.
- A host evacuated by an operator: each VM stops there, then runs elsewhere.

Throughout each scenario a `QemuWatch` looks at every host's QEMU processes five
times a second and records any moment at which one VM runs twice. The windows are
shorter than the defaults (unreachable 5 s, fence 10 s, dead 20 s) but keep their
order and the rule between them (fence + unreachable + the time to act <= dead), and
an agent still reports several times within the shortest.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from ipaddress import ip_address, ip_network
from itertools import pairwise
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from nubis.config import FENCE_ACT_SECONDS
from tests.e2e import guests
from tests.e2e.cloud import Cloud, Host
from tests.e2e.conftest import CloudFactory
from tests.e2e.guests import (
    NEEDS_GUESTS,
    console,
    create_on,
    create_together,
    events,
    forget_host_key,
    host_of,
    ssh,
    ssh_run,
    vms,
    wait_ready,
    wait_until,
)
from tests.e2e.processes import checked

pytestmark = NEEDS_GUESTS

UNREACHABLE_SECONDS = 4.0
FENCE_SECONDS = 6.0
DEAD_SECONDS = 13.0
WINDOWS = {
    "NUBIS_HOST_UNREACHABLE_SECONDS": f"{UNREACHABLE_SECONDS:g}",
    "NUBIS_HOST_FENCE_SECONDS": f"{FENCE_SECONDS:g}",
    "NUBIS_HOST_DEAD_SECONDS": f"{DEAD_SECONDS:g}",
}
DEAD_WITHIN = DEAD_SECONDS + 60.0
"""From a host's failure to its being declared dead (about 13 s; the rest is slack for
a busy machine)."""
MOVE_SECONDS = 120.0
"""From a host's death (or evacuation) to its VMs' QEMU running elsewhere."""
SETTLE_SECONDS = 60.0
OUTAGE_SECONDS = 3 * DEAD_SECONDS
"""How long the control plane is down in the outage test: long enough that every host
would be dead three times over if silence toward the control plane alone counted."""
SAMPLE_SECONDS = 0.2
LONGEST_GAP_SECONDS = 2.0
"""The longest a QemuWatch may go without a look: a VM run twice for longer is seen."""
CONSOLE_TAIL_LINES = 30
NETWORK = "blue"
"""A project network (IPAM `auto`): its addresses move with the VMs."""


# --- watching QEMU ---------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One look at every host: which QEMU runs which VM."""

    at: float
    """When (monotonic)."""
    running: dict[str, list[tuple[str, int]]]
    """VM id → (host, pid) of each QEMU that runs it."""

    def twice(self) -> dict[str, list[tuple[str, int]]]:
        """The VMs that run more than once in this look."""
        return {vm: where for vm, where in self.running.items() if len(where) > 1}

    def on(self, host: str) -> set[str]:
        """The VMs that run on `host`."""
        return {vm for vm, where in self.running.items() if any(h == host for h, _ in where)}

    def elsewhere(self, vms: set[str], host: str) -> set[str]:
        """Those of `vms` that run on a host other than `host`."""
        return {vm for vm in vms if any(h != host for h, _ in self.running.get(vm, []))}


class QemuWatch:
    """Looks at every QEMU of the cloud's hosts every SAMPLE_SECONDS, in a thread of its
    own, for as long as its `with` block lasts."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self.samples: list[Sample] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qemu-watch", daemon=True)

    def __enter__(self) -> QemuWatch:
        self._thread.start()
        wait_until("the first look at the hosts", lambda: self.samples or self.error, 10)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            try:
                self.samples.append(Sample(time.monotonic(), self.cloud.qemu_processes()))
            except BaseException as error:  # the test sees it in check()
                self.error = error
                return
            if self._stop.wait(SAMPLE_SECONDS):
                return

    def check(self) -> None:
        """It looked often and throughout, and never saw a VM run twice."""
        assert self.error is None, f"the watch failed: {self.error!r}"
        samples = self.samples
        span = samples[-1].at - samples[0].at
        gaps = [later.at - earlier.at for earlier, later in pairwise(samples)]
        assert len(samples) >= span / (2 * SAMPLE_SECONDS), f"{len(samples)} looks in {span} s"
        assert max(gaps, default=0.0) < LONGEST_GAP_SECONDS, f"a gap of {max(gaps):.1f} s"
        doubled = [(round(s.at - samples[0].at, 1), s.twice()) for s in samples if s.twice()]
        assert doubled == [], f"VMs ran twice (seconds into the watch, where): {doubled}"

    def first(self, holds: Callable[[Sample], bool], after: float) -> Sample:
        """The first look at or after `after` (monotonic) in which `holds`."""
        found = next((s for s in self.samples if s.at >= after and holds(s)), None)
        assert found is not None, "no such look"
        return found


# --- what the operator sees ------------------------------------------------------------


def _host_row(cloud: Cloud, host: Host) -> dict[str, Any]:
    row: dict[str, Any] = cloud.admin_json("host", "show", host.name)
    return row


def _host_events(cloud: Cloud, host: Host) -> list[str]:
    """The host's event log, each `AT KIND: DETAIL`."""
    return [str(line) for line in _host_row(cloud, host)["events"]]


def _event_time(line: str) -> float:
    """When a host event was written (wall clock, to the second)."""
    at = datetime.fromisoformat(line.split(" ", 1)[0])
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def _wait_health(cloud: Cloud, host: Host, health: str, timeout: float) -> None:
    wait_until(
        f"{host.name} is {health}",
        lambda: _host_row(cloud, host)["health"] == health,
        timeout,
    )


def _healths(cloud: Cloud) -> dict[str, str]:
    return {row["name"]: row["health"] for row in cloud.admin_json("host", "list")}


def _vm_dirs(host: Host) -> set[str]:
    root = host.state_dir / "vms"
    return {path.name for path in root.iterdir()} if root.exists() else set()


def _agent_log(host: Host) -> str:
    return host.log.read_text(errors="replace")


# --- what the user sees ----------------------------------------------------------------


def _nic(vm: dict[str, Any], number: int) -> dict[str, Any]:
    return next(dict(nic) for nic in vm["nics"] if nic["number"] == number)


def _moved(
    cloud: Cloud, names: tuple[str, ...], away_from: Host
) -> dict[str, dict[str, Any]] | None:
    """The VMs `names` once each runs on a host other than `away_from`."""
    listed = vms(cloud)
    gone_from = _host_row(cloud, away_from)["id"]
    if all(
        listed[name]["state"] == "running" and listed[name]["host"] not in (None, gone_from)
        for name in names
    ):
        return {name: listed[name] for name in names}
    return None


def _assert_same_vm_elsewhere(
    cloud: Cloud, before: dict[str, Any], after: dict[str, Any], away_from: Host
) -> Host:
    """The VM kept its id, name and NICs' MACs, and its project network address; NIC 0
    took the new host's /64. Its new host."""
    assert (after["id"], after["name"]) == (before["id"], before["name"])
    new_host = host_of(cloud, after)
    assert new_host is not away_from
    assert [nic["mac"] for nic in after["nics"]] == [nic["mac"] for nic in before["nics"]]
    for nic in before["nics"][1:]:
        assert _nic(after, nic["number"])["address"] == nic["address"]
    address = _nic(after, 0)["address"]
    assert address != _nic(before, 0)["address"]
    assert new_host.vm_prefix is not None
    assert ip_address(address) in ip_network(new_host.vm_prefix)
    return new_host


def _wait_ready(cloud: Cloud, name: str, since: str = "") -> str:
    """`guests.wait_ready`, with the console's tail when the guest is not ready."""
    try:
        return wait_ready(cloud, name, since)
    except AssertionError as error:
        tail = "\n".join(console(cloud, name).splitlines()[-CONSOLE_TAIL_LINES:])
        raise AssertionError(f"{error}; its console ends:\n{tail}") from None


def _pings(cloud: Cloud, vm: str, address: str) -> bool:
    return ssh_run(cloud, vm, f"ping -6 -c 2 -W 3 {address}").returncode == 0


def _kinds(cloud: Cloud, name: str) -> list[str]:
    return [event["kind"] for event in events(cloud, name)]


def _assert_in_order(lines: list[str], *expected: str) -> None:
    """Each of `expected` is in (part of) a line of `lines`, in this order."""
    at = 0
    for wanted in expected:
        found = next((i for i in range(at, len(lines)) if wanted in lines[i]), None)
        assert found is not None, f"{wanted!r} not after line {at} of:\n" + "\n".join(lines)
        at = found + 1


# --- a host that loses its power -------------------------------------------------------


def test_a_host_that_loses_power_has_its_vms_run_on_other_hosts_with_their_names_and_addresses(
    vm_cloud: CloudFactory,
) -> None:
    cloud = vm_cloud(3, settings=WINDOWS)
    checked(cloud.cli("network", "create", NETWORK, "--ipam", "auto"))
    victim = cloud.host("h3")
    names = ("p1", "p2")
    create_on(cloud, victim, names, "--network", NETWORK)
    before = {name: cloud.cli_json("vm", "show", name) for name in names}
    consoles = {name: _wait_ready(cloud, name) for name in names}
    for name in names:  # the user has been in them: their host keys are known
        assert ssh(cloud, name, "hostname") == f"{name}\n"

    with QemuWatch(cloud) as watch:
        lost = time.time()
        victim.power_off()
        assert victim.pids() == []
        _wait_health(cloud, victim, "dead", DEAD_WITHIN)
        after = wait_until("p1 and p2 run on other hosts", lambda: _moved(cloud, names, victim),
                           MOVE_SECONDS)  # fmt: skip
        for name in names:
            _wait_ready(cloud, name, since=consoles[name])
    watch.check()
    assert watch.samples[0].on(victim.name) == {vm["id"] for vm in before.values()}

    # Death was confirmed by both watchers, and not before the dead window.
    log = _host_events(cloud, victim)
    _assert_in_order(
        log,
        "health: online -> unreachable",
        "health: unreachable -> dead",
        "evacuate: 2 VM(s) taken off the dead host",
    )
    dead = next(line for line in log if "-> dead" in line)
    assert "2 of 2 watchers report it silent" in dead
    assert _event_time(dead) >= lost + DEAD_SECONDS - 4

    new_hosts = {}
    for name in names:
        new_hosts[name] = _assert_same_vm_elsewhere(cloud, before[name], after[name], victim)
        _assert_in_order(_kinds(cloud, name), "placed", "host dead", "placed")
        placed = events(cloud, name)[-1]["detail"]
        assert placed == f"recreated on host {new_hosts[name].name}"
        assert f"vm placed: VM {name} recreated here" in "\n".join(
            _host_events(cloud, new_hosts[name])
        )
        # A new disk from the image, so a new host key: the user forgets the old one.
        forget_host_key(cloud, after[name]["id"])
        assert ssh(cloud, name, "hostname") == f"{name}\n"
        project_address = _nic(after[name], 1)["address"]
        assert project_address in ssh(cloud, name, "ip -6 addr show scope global")
    # Each reaches the other at its project network address, wherever each now runs.
    for name, other in (names, names[::-1]):
        address = _nic(after[other], 1)["address"]
        pings = partial(_pings, cloud, name, address)
        wait_until(f"{name} pings {other} at {address}", pings, SETTLE_SECONDS)
    running = cloud.qemu_processes()
    for name in names:
        assert [host for host, _ in running[after[name]["id"]]] == [new_hosts[name].name]
    assert not Sample(0.0, running).on(victim.name)


# --- a host cut off the underlay, and back ---------------------------------------------


def test_a_host_cut_off_the_underlay_stops_its_vms_before_they_move_and_comes_back_empty(
    vm_cloud: CloudFactory,
) -> None:
    cloud = vm_cloud(3, settings=WINDOWS)
    cut, bystander_host = cloud.host("h3"), cloud.host("h1")
    names = ("c1", "c2")
    create_on(cloud, cut, names)
    (bystander,) = create_on(cloud, bystander_host, ("b1",))
    before = {name: cloud.cli_json("vm", "show", name) for name in names}
    consoles = {name: _wait_ready(cloud, name) for name in (*names, "b1")}
    ids = {before[name]["id"] for name in names}
    kept = cloud.qemu_processes()[bystander["id"]]
    assert [host for host, _ in kept] == [bystander_host.name]

    with QemuWatch(cloud) as watch:
        cut_at = time.monotonic()
        cut.cut()
        _wait_health(cloud, cut, "dead", DEAD_WITHIN)
        after = wait_until("c1 and c2 run on other hosts", lambda: _moved(cloud, names, cut),
                           MOVE_SECONDS)  # fmt: skip
        for name in names:
            _wait_ready(cloud, name, since=consoles[name])
        # The cut host's agent still thinks it may have the VMs: it keeps them stopped.
        assert cut.qemu_pids(before["c1"]["id"]) == []
        assert _vm_dirs(cut) == ids  # their disks are still there, as a fence leaves them

        cut.reconnect()
        _wait_health(cloud, cut, "online", SETTLE_SECONDS)
        wait_until("h3 removed the VMs it ran", lambda: not _vm_dirs(cut), SETTLE_SECONDS)
        # It takes new VMs, and runs them.
        (fresh,) = create_on(cloud, cut, ("n1",))
        _wait_ready(cloud, "n1")
        assert ssh(cloud, "n1", "hostname") == "n1\n"
    watch.check()

    # It fenced: its VMs were gone within the fence time (and the time to kill them)
    # after the cut, and only later ran elsewhere.
    fenced = watch.first(lambda s: not (s.on(cut.name) & ids), cut_at)
    assert fenced.at - cut_at <= FENCE_SECONDS + FENCE_ACT_SECONDS, (
        f"{cut.name} stopped its VMs {fenced.at - cut_at:.1f} s after the cut"
    )
    elsewhere = watch.first(lambda s: bool(s.elsewhere(ids, cut.name)), cut_at)
    assert elsewhere.at - cut_at >= DEAD_SECONDS - 2
    # Back on the underlay it never ran them again (stale), nor anything but n1.
    assert [s for s in watch.samples if s.at >= fenced.at and s.on(cut.name) - {fresh["id"]}] == []
    # The hosts that still saw each other did not fence: b1's QEMU ran throughout.
    assert [s.at for s in watch.samples if s.running.get(bystander["id"]) != kept] == []

    log = _host_events(cloud, cut)
    _assert_in_order(
        log,
        "health: online -> unreachable",
        "health: unreachable -> dead",
        "evacuate: 2 VM(s) taken off the dead host",
        "fenced: its agent stopped its VMs (self-fencing)",
    )
    _assert_in_order(log, "health: dead -> online", "rejoined: back from the dead")
    removed = [line for line in log if " removed: vm " in line]
    assert {re.sub(r".* removed: vm ", "", line) for line in removed} >= ids
    assert re.search(r"fenced: no control plane for [\d.]+ s and 0 of 2 peers", _agent_log(cut))
    assert "fenced" not in _agent_log(bystander_host)
    assert _host_row(cloud, cut)["allocation_state"] == "accepting"

    for name in names:
        _assert_same_vm_elsewhere(cloud, before[name], after[name], cut)
        _assert_in_order(_kinds(cloud, name), "placed", "host dead", "placed")
        forget_host_key(cloud, after[name]["id"])
        assert ssh(cloud, name, "hostname") == f"{name}\n"
    assert _healths(cloud) == dict.fromkeys(cloud.hosts, "online")
    assert cloud.admin_json("host", "check")["differences"] == []


# --- a steady cloud: the control plane's outage, an evacuation by hand -----------------

EVACUATED = ("e1", "e2")
"""On h1, together."""
KEPT = ("k2", "k3")
"""One on h2, one on h3."""


@pytest.fixture(scope="module")
def steady(tiny_image: Path, request: pytest.FixtureRequest) -> Iterator[Cloud]:
    """A cloud whose VMs all run and answer: e1 and e2 on h1, k2 and k3 on the other
    two hosts, one each (an anti-affinity group spreads them)."""
    failed_before = request.session.testsfailed
    cloud = Cloud(3, settings=WINDOWS)
    cloud.start()
    try:
        checked(cloud.admin("image", "add", str(tiny_image), "--name", guests.IMAGE))
        guests.add_key(cloud)
        create_on(cloud, cloud.host("h1"), EVACUATED)
        create_together(cloud, KEPT, "--group", "kept")
        for name in (*EVACUATED, *KEPT):
            _wait_ready(cloud, name)
        names = {row["id"]: row["name"] for row in cloud.admin_json("host", "list")}
        assert sorted(names[vm["host"]] for vm in vms(cloud).values()) == [
            "h1", "h1", "h2", "h3"
        ]  # fmt: skip
        yield cloud
    finally:
        cloud.close(show_logs=request.session.testsfailed > failed_before)


def test_an_outage_of_the_control_plane_stops_moves_and_restarts_no_vm(steady: Cloud) -> None:
    cloud = steady
    listed = vms(cloud)
    running = cloud.qemu_processes()
    assert {vm["id"] for vm in listed.values()} <= set(running)
    assert all(len(where) == 1 for where in running.values())
    logs = {name: events(cloud, name) for name in listed}
    host_logs = {name: len(_host_events(cloud, host)) for name, host in cloud.hosts.items()}

    with QemuWatch(cloud) as watch:
        cloud.stop_plane()
        assert cloud.cli("vm", "list").returncode != 0  # the API is down
        time.sleep(OUTAGE_SECONDS)
        # The hosts' agents ran on all along, reaching each other: none fenced.
        assert all(
            host.agent is not None and host.agent.poll() is None for host in cloud.hosts.values()
        )
        cloud.start_plane()
        back = time.monotonic()
        # For a dead window and more after the return, no host is declared dead.
        seen: list[tuple[float, dict[str, str]]] = []
        while time.monotonic() - back < DEAD_SECONDS + UNREACHABLE_SECONDS + 5:
            seen.append((time.monotonic() - back, _healths(cloud)))
            time.sleep(1.0)
    watch.check()
    assert watch.samples[-1].at - watch.samples[0].at >= OUTAGE_SECONDS
    # Every VM ran in the same QEMU, on the same host, at every look.
    assert [s.at for s in watch.samples if s.running != running] == []
    assert [(at, h) for at, h in seen if "dead" in h.values()] == []
    # A host whose first report since the return came after the workers' first look is
    # `unreachable` until it does (nothing was heard of it for two minutes); then every
    # host is online, through the moment a death could first be confirmed and beyond.
    online = dict.fromkeys(cloud.hosts, "online")
    settled = max((at for at, healths in seen if healths != online), default=0.0)
    assert settled <= UNREACHABLE_SECONDS + 10, seen
    assert seen[-1][0] >= DEAD_SECONDS + UNREACHABLE_SECONDS

    after = vms(cloud)
    assert {name: (vm["state"], vm["host"]) for name, vm in after.items()} == {
        name: ("running", vm["host"]) for name, vm in listed.items()
    }
    assert {name: events(cloud, name) for name in listed} == logs
    for name, host in cloud.hosts.items():
        new = _host_events(cloud, host)[host_logs[name] :]
        assert [line for line in new if "-> dead" in line or "fenced" in line] == [], new
        if any("-> unreachable" in line for line in new):
            # It was kept from death by the control plane's own outage, and says so.
            held = "not dead: the control plane has heard from hosts for only"
            _assert_in_order(new, held, "online -> unreachable", "unreachable -> online")
    for name in listed:
        # Up since before the outage: not rebooted inside its QEMU either.
        uptime = float(ssh(cloud, name, "cat", "/proc/uptime").split()[0])
        assert uptime > OUTAGE_SECONDS + DEAD_SECONDS


def test_an_evacuated_host_s_vms_stop_there_then_run_elsewhere_and_the_host_is_drained(
    steady: Cloud,
) -> None:
    cloud = steady
    source = cloud.host("h1")
    before = {name: cloud.cli_json("vm", "show", name) for name in EVACUATED}
    consoles = {name: console(cloud, name) for name in EVACUATED}
    for name in EVACUATED:
        assert ssh(cloud, name, "hostname") == f"{name}\n"
    kept = {vm_id: where for vm_id, where in cloud.qemu_processes().items()
            if vm_id not in {vm["id"] for vm in before.values()}}  # fmt: skip
    ids = {vm["id"] for vm in before.values()}

    with QemuWatch(cloud) as watch:
        asked = time.monotonic()
        done = checked(cloud.admin("host", "evacuate", source.name))
        assert "2 VM(s) move to other hosts" in done
        after = wait_until("e1 and e2 run on other hosts", lambda: _moved(cloud, EVACUATED, source),
                           MOVE_SECONDS)  # fmt: skip
        for name in EVACUATED:
            _wait_ready(cloud, name, since=consoles[name])
        wait_until("h1 removed the VMs", lambda: not _vm_dirs(source), SETTLE_SECONDS)
    watch.check()
    # Each stopped on h1 before it started elsewhere; the others never stopped.
    stopped = watch.first(lambda s: not (s.on(source.name) & ids), asked)
    assert watch.first(lambda s: bool(s.elsewhere(ids, source.name)), asked).at > stopped.at
    assert all({vm_id: s.running.get(vm_id) for vm_id in kept} == kept for s in watch.samples)
    assert source.name not in {h for where in cloud.qemu_processes().values() for h, _ in where}

    row = _host_row(cloud, source)
    assert (row["allocation_state"], row["health"]) == ("draining", "online")
    assert row["cores"].startswith("0/")
    log = row["events"]
    _assert_in_order(
        log,
        "allocation_state: accepting -> draining: evacuated",
        "evacuate: evacuation asked by an operator: 2 VM(s) move",
    )
    for name in EVACUATED:
        _assert_in_order(log, f"vm leaving: stopping VM {name} to move it",
                         f"vm left: VM {name} stopped here")  # fmt: skip
        new_host = _assert_same_vm_elsewhere(cloud, before[name], after[name], source)
        assert f"vm placed: VM {name} recreated here" in "\n".join(_host_events(cloud, new_host))
        _assert_in_order(
            [f"{e['kind']}: {e['detail']}" for e in events(cloud, name)],
            f"placed: created on host {source.name}",
            f"evacuate: host {source.name} is evacuated: moving",
            f"leaving: host {source.name} stops it before it moves",
            f"left: host {source.name} stopped it",
            f"placed: recreated on host {new_host.name}",
        )
        forget_host_key(cloud, after[name]["id"])
        assert ssh(cloud, name, "hostname") == f"{name}\n"
    assert cloud.admin_json("host", "check")["differences"] == []

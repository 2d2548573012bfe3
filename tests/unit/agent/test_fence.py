"""Self-fencing: the majority rule, the decision as a function of times, the gate that
keeps a fenced host from starting VMs, and the watchdog that kills them."""

from __future__ import annotations

import errno
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nubis.agent import fence
from nubis.agent.fence import Gate, Watchdog, must_fence, quorate
from nubis.agent.peers import NEW_PEER_GRACE, NONCE_BYTES, answered_nonce, question
from nubis.agent.qemu import process
from nubis.agent.qemu.paths import VmPaths
from nubis.agent.runner import Agent
from nubis.protocol import HostReport, Peer

PEERS = [Peer(host="host-2", address="fd00::2"), Peer(host="host-3", address="fd00::3")]
FENCE_SECONDS = 10.0

StartVm = Callable[[Path, str], VmPaths]


@pytest.mark.parametrize(
    ("reachable", "watched", "expected"),
    [(1, 2, True), (0, 2, False), (2, 4, True), (1, 3, False), (2, 5, False), (3, 5, True)],
)
def test_a_host_is_quorate_when_it_reaches_at_least_half_its_peers(
    reachable: int, watched: int, expected: bool
) -> None:
    # With itself, that is a majority of the group of the host and its peers.
    assert quorate(reachable, watched) is expected


def test_a_host_cut_off_from_the_control_plane_and_its_peers_fences() -> None:
    assert must_fence(now=100.0, reached_at=80.0, fence_seconds=10.0, watched=2, reachable=0)


def test_a_control_plane_outage_alone_never_fences() -> None:
    assert not must_fence(now=1e6, reached_at=0.0, fence_seconds=10.0, watched=2, reachable=1)


def test_a_host_that_reached_the_control_plane_lately_does_not_fence() -> None:
    assert not must_fence(now=100.0, reached_at=90.0, fence_seconds=10.0, watched=2, reachable=0)
    assert must_fence(now=100.01, reached_at=90.0, fence_seconds=10.0, watched=2, reachable=0)


def test_a_host_without_peers_or_fence_time_never_fences() -> None:
    assert not must_fence(now=1e6, reached_at=0.0, fence_seconds=10.0, watched=0, reachable=0)
    assert not must_fence(now=1e6, reached_at=0.0, fence_seconds=None, watched=2, reachable=0)


def test_the_gate_is_closed_when_the_agent_starts_and_opens_after_a_post_then_a_get() -> None:
    gate = Gate()
    assert not gate.may_start()
    gate.fetched(gate.epoch)
    assert not gate.may_start()
    gate.posted(gate.epoch)
    assert not gate.may_start()
    gate.fetched(gate.epoch)
    assert gate.may_start()
    assert not gate.fenced


def test_a_fence_closes_the_gate_until_a_post_and_a_get_after_it() -> None:
    gate = _open_gate()
    before = gate.epoch
    gate.posted(before)
    assert gate.fence()
    assert not gate.may_start()
    assert gate.fenced
    # A POST made before the fence, and a GET begun before it, count for nothing.
    gate.fetched(before)
    assert not gate.may_start()
    gate.posted(before)
    gate.fetched(gate.epoch)
    assert not gate.may_start()
    gate.posted(gate.epoch)
    gate.fetched(gate.epoch)
    assert gate.may_start()
    assert not gate.fenced


def test_a_fence_between_the_post_and_the_get_keeps_the_gate_closed() -> None:
    gate = Gate()
    epoch = gate.epoch
    gate.posted(epoch)
    assert gate.fence()
    gate.fetched(epoch)
    assert not gate.may_start()
    gate.fetched(gate.epoch)
    assert not gate.may_start()


def test_a_failed_call_between_the_post_and_the_get_keeps_the_gate_closed() -> None:
    gate = Gate()
    gate.posted(gate.epoch)
    gate.failed()
    gate.fetched(gate.epoch)
    assert not gate.may_start()


def test_a_fenced_host_does_not_fence_again_until_it_reopened() -> None:
    gate = _open_gate()
    assert gate.fence()
    epoch = gate.epoch
    assert not gate.fence()
    assert gate.epoch == epoch


def test_a_fence_outlives_a_restart_of_the_agent_until_the_gate_opens(tmp_path: Path) -> None:
    marker = tmp_path / "fenced"
    gate = Gate(marker)
    assert gate.fence()
    again = Gate(marker)
    assert again.fenced
    again.posted(again.epoch)
    again.fetched(again.epoch)
    assert not marker.exists()
    assert not Gate(marker).fenced


def _open_gate() -> Gate:
    gate = Gate()
    gate.posted(gate.epoch)
    gate.fetched(gate.epoch)
    assert gate.may_start()
    return gate


@pytest.fixture
def start_vm() -> Iterator[StartVm]:
    """`start_vm(root, vm_id)`: a process that `process` takes for the VM's QEMU (its
    pidfile, its `-pidfile` and `-name guest=` arguments); all are killed afterwards."""
    started: list[subprocess.Popen[bytes]] = []

    def start(root: Path, vm_id: str) -> VmPaths:
        paths = VmPaths.of(root, vm_id)
        paths.dir.mkdir(parents=True)
        argv = [sys.executable, "-c", "import time; time.sleep(600)"]
        argv += ["-pidfile", str(paths.pidfile), "-name", f"guest={vm_id}"]
        child = subprocess.Popen(argv)
        started.append(child)
        paths.pidfile.write_text(f"{child.pid}\n")
        deadline = time.monotonic() + 5.0
        while not process.running(paths):  # until it has exec'd with its arguments
            assert time.monotonic() < deadline
            time.sleep(0.01)
        return paths

    yield start
    for child in started:
        child.kill()
        child.wait()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _watchdog(tmp_path: Path, clock: Clock, state_dir: Path | None = None) -> Watchdog:
    return Watchdog(tmp_path / "vms", "::1", state_dir=state_dir, clock=clock)


def test_the_watchdog_kills_every_vm_and_closes_the_gate_when_it_must_fence(
    tmp_path: Path, start_vm: StartVm
) -> None:
    clock = Clock()
    vms = [start_vm(tmp_path / "vms", f"vm-{n}") for n in range(3)]
    watchdog = _watchdog(tmp_path, clock)
    watchdog.watch(PEERS, FENCE_SECONDS)
    watchdog.reached(clock.now)
    clock.now += FENCE_SECONDS
    assert not watchdog.check(clock.now)
    assert all(process.running(paths) for paths in vms)
    clock.now += 0.1
    assert watchdog.check(clock.now)
    assert not any(process.running(paths) for paths in vms)
    assert watchdog.gate.fenced
    assert not watchdog.gate.may_start()
    # The disks stay: a fence stops VMs, it does not delete them.
    assert all(paths.dir.exists() for paths in vms)


def test_a_fenced_watchdog_kills_a_vm_started_in_a_race_with_the_fence(
    tmp_path: Path, start_vm: StartVm
) -> None:
    clock = Clock()
    watchdog = _watchdog(tmp_path, clock)
    watchdog.watch(PEERS, FENCE_SECONDS)
    clock.now += FENCE_SECONDS + 1
    assert watchdog.check(clock.now)
    late = start_vm(tmp_path / "vms", "vm-late")
    assert not watchdog.check(clock.now)
    assert not process.running(late)


def test_the_watchdog_never_fences_without_peers(tmp_path: Path, start_vm: StartVm) -> None:
    clock = Clock()
    vm = start_vm(tmp_path / "vms", "vm-1")
    watchdog = _watchdog(tmp_path, clock)
    watchdog.watch([], FENCE_SECONDS)
    clock.now += 1e6
    assert not watchdog.check(clock.now)
    assert process.running(vm)


def test_a_restarted_watchdog_counts_from_the_last_contact_before_the_restart(
    tmp_path: Path,
) -> None:
    clock = Clock()
    first = _watchdog(tmp_path, clock, state_dir=tmp_path)
    first.watch(PEERS, FENCE_SECONDS)
    first.reached(clock.now)
    saved = json.loads((tmp_path / fence.WATCH_FILE).read_text())
    assert saved["fence_seconds"] == FENCE_SECONDS
    # The agent was away: the control plane last answered long ago.
    saved["reached_at"] -= 3 * FENCE_SECONDS
    (tmp_path / fence.WATCH_FILE).write_text(json.dumps(saved))
    later = Clock()
    again = _watchdog(tmp_path, later, state_dir=tmp_path)
    # Its peers get the time to answer first probes; then it fences.
    assert not again.check(later.now)
    later.now += NEW_PEER_GRACE + 0.1
    assert again.check(later.now)


def test_a_watchdog_answers_probes_once_its_port_is_free(tmp_path: Path) -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    watchdog = Watchdog(tmp_path / "vms", "127.0.0.1", port=port, probe_interval=0.05)
    watchdog.start()
    try:
        taken.close()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(0.1)
            deadline = time.monotonic() + 5.0
            while True:
                assert time.monotonic() < deadline, "no answer"
                client.sendto(question(bytes(NONCE_BYTES)), ("127.0.0.1", port))
                try:
                    answer, _ = client.recvfrom(64)
                except TimeoutError:
                    continue
                assert answered_nonce(answer) == bytes(NONCE_BYTES)
                break
    finally:
        watchdog.stop()
        taken.close()


def test_an_agent_restarted_on_a_cut_off_host_fences_while_it_cannot_describe_the_host(
    tmp_path: Path, start_vm: StartVm
) -> None:
    # The watch the earlier agent left: a peer that answers no more, the control plane
    # last reached a minute ago. The new agent cannot learn its underlay address: no
    # route to the control plane.
    vm = start_vm(tmp_path / "vms", "vm-1")
    watch = {
        "address": "127.0.0.1",
        "fence_seconds": 1.0,
        "peers": [Peer(host="host-2", address="127.0.0.2").model_dump()],
        "reached_at": time.time() - 60,
    }
    (tmp_path / fence.WATCH_FILE).write_text(json.dumps(watch))
    stop = threading.Event()
    tries: list[float] = []

    def describe() -> HostReport:
        tries.append(time.monotonic())
        if not process.running(vm):
            stop.set()
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    agent = Agent("http://[fd00::1]:8080", tmp_path, describe)
    agent.retry_seconds = 0.1
    runs = threading.Thread(target=agent.run, args=(stop,))
    runs.start()
    runs.join(30.0)
    stop.set()
    runs.join()
    assert not process.running(vm)
    assert (tmp_path / fence.FENCED_FILE).exists()
    assert len(tries) >= 2  # it kept trying to describe the host meanwhile

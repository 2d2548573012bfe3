"""Peer probes and self-fencing for real, without QEMU: three hosts as network
namespaces on one underlay bridge, each running the agent's watchdog (probe
responder, prober, fence) in a driver process, with fake VMs: processes that the
agent's `process` module takes for QEMU (a pidfile in the VM's directory, the
`-pidfile` and `-name guest=` arguments).

No control plane runs: each host reached it once, when it was told its peers. So
the control plane is out throughout, and only the peers decide whether a host fences.
Everything is named after this run (`tests/e2e/namespaces.py`) and removed
afterwards, even when a test fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from nubis.agent.fence import CHECK_INTERVAL
from nubis.agent.peers import PROBE_INTERVAL
from tests.e2e import namespaces
from tests.e2e.conftest import requires_root
from tests.e2e.namespaces import UNDERLAY_LINK, Names, Underlay
from tests.e2e.processes import REPO, Process

pytestmark = requires_root

FENCE_SECONDS = 3.0
KILL_SECONDS = 0.5
"""What SIGKILL and the wait for a fake VM to be gone may take, at most."""
BOUND = FENCE_SECONDS + CHECK_INTERVAL + KILL_SECONDS
"""After the cut, the cut-off host's VMs are gone within this (docs/agent.md)."""
VMS_PER_HOST = 2

# Runs the agent's watchdog on a host, one JSON command a line.
DRIVER = """
import json, subprocess, sys
from pathlib import Path
from nubis.agent.fence import Watchdog
from nubis.agent.qemu import process
from nubis.agent.qemu.paths import VmPaths, vm_ids
from nubis.protocol import Peer
state, address = Path(sys.argv[1]), sys.argv[2]
vms = state / "vms"
watchdog = Watchdog(vms, address, state_dir=state)
watchdog.start()
fakes = []
print("ready", flush=True)
for line in sys.stdin:
    command = json.loads(line)
    if command["op"] == "watch":
        peers = [Peer.model_validate(peer) for peer in command["peers"]]
        watchdog.watch(peers, command["fence_seconds"])
        watchdog.reached(watchdog.now())
        answer = {}
    elif command["op"] == "vm":
        paths = VmPaths.of(vms, command["id"])
        paths.dir.mkdir(parents=True)
        argv = [sys.executable, "-c", "import time; time.sleep(600)"]
        argv += ["-pidfile", str(paths.pidfile), "-name", "guest=" + command["id"]]
        fakes.append(subprocess.Popen(argv, start_new_session=True))
        paths.pidfile.write_text(f"{fakes[-1].pid}\\n")
        answer = {"pid": fakes[-1].pid}
    else:
        answer = {
            "silent": {seen.host: seen.silent_seconds for seen in watchdog.seen()},
            "fenced": watchdog.gate.fenced,
            "may_start": watchdog.gate.may_start(),
            "running": [vm for vm in vm_ids(vms) if process.running(VmPaths.of(vms, vm))],
        }
    print(json.dumps(answer), flush=True)
"""


@dataclass
class Host:
    name: str
    namespace: str
    address: str
    driver: subprocess.Popen[str]
    vms: list[str] = field(default_factory=list)

    def command(self, op: str, **arguments: object) -> dict[str, object]:
        assert self.driver.stdin is not None and self.driver.stdout is not None
        self.driver.stdin.write(json.dumps({"op": op, **arguments}) + "\n")
        self.driver.stdin.flush()
        answer: dict[str, object] = json.loads(self.driver.stdout.readline())
        return answer

    def look(self) -> Look:
        answer = self.command("look")
        silent, running = answer["silent"], answer["running"]
        assert isinstance(silent, dict) and isinstance(running, list)
        return Look(
            {str(host): float(seconds) for host, seconds in silent.items()},
            bool(answer["fenced"]),
            bool(answer["may_start"]),
            [str(vm) for vm in running],
        )


@dataclass(frozen=True)
class Look:
    silent: dict[str, float]
    """Each peer's host name → how long it has been silent."""
    fenced: bool
    may_start: bool
    running: list[str]


@dataclass
class Fabric:
    names: Names
    underlay: Underlay
    hosts: dict[str, Host]

    def cut(self, name: str) -> None:
        namespaces.run("ip", "-n", self.hosts[name].namespace, "link", "set", UNDERLAY_LINK, "down")

    def mend(self, name: str, number: int) -> None:
        host = self.hosts[name]
        namespaces.run("ip", "-n", host.namespace, "link", "set", UNDERLAY_LINK, "up")
        # A link that went down lost its IPv6 addresses.
        address = f"{self.underlay.address(number)}/64"
        namespaces.run(
            "ip", "-n", host.namespace, "addr", "replace", address, "dev", UNDERLAY_LINK, "nodad"
        )


def _start_driver(names: Names, name: str, address: str) -> subprocess.Popen[str]:
    state = names.work_dir / name
    state.mkdir()
    namespace = names.namespace(name)
    driver = subprocess.Popen(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", DRIVER, str(state), address],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    recorded = Process.of(f"watchdog-{name}", driver.pid)
    if recorded is not None:
        namespaces.record(names.work_dir, recorded)
    assert driver.stdout is not None
    assert driver.stdout.readline() == "ready\n"
    return driver


@pytest.fixture
def fabric() -> Iterator[Fabric]:
    namespaces.sweep_leftovers()
    names = namespaces.claim()
    drivers: list[subprocess.Popen[str]] = []
    try:
        underlay = Underlay(names, namespaces.ula_prefix(64))
        underlay.make_bridge()
        hosts = {}
        for number, name in enumerate(("h1", "h2", "h3"), start=1):
            underlay.add_host(name, number)
            address = underlay.address(number)
            driver = _start_driver(names, name, address)
            drivers.append(driver)
            hosts[name] = Host(name, names.namespace(name), address, driver)
        for name, host in hosts.items():
            peers = [
                {"host": other, "address": peer.address}
                for other, peer in hosts.items()
                if other != name
            ]
            host.command("watch", peers=peers, fence_seconds=FENCE_SECONDS)
            for n in range(VMS_PER_HOST):
                vm = f"vm-{name}-{n}"
                host.command("vm", id=vm)
                host.vms.append(vm)
        yield Fabric(names, underlay, hosts)
    finally:
        for driver in drivers:
            driver.kill()
            driver.wait()
        # Kills what runs in the namespaces (the fake VMs too), then removes them.
        namespaces.remove_network(names)
        shutil.rmtree(names.work_dir, ignore_errors=True)


def wait_until(what: str, check: Callable[[], bool], timeout: float) -> float:
    """When `check` first held (monotonic)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return time.monotonic()


def _sees_all(host: Host) -> bool:
    silent = host.look().silent
    return len(silent) == 2 and all(seconds < 2 * PROBE_INTERVAL for seconds in silent.values())


def test_peers_on_one_underlay_see_each_other_and_none_fences(fabric: Fabric) -> None:
    for host in fabric.hosts.values():
        wait_until(f"{host.name} hears its peers", lambda host=host: _sees_all(host), 5.0)  # type: ignore[misc]
    # The control plane has been out for longer than the fence time by now: a host
    # that still reaches its peers keeps its VMs.
    time.sleep(FENCE_SECONDS + 1.0)
    for host in fabric.hosts.values():
        look = host.look()
        assert not look.fenced
        assert look.running == host.vms
        assert all(seconds < 2 * PROBE_INTERVAL for seconds in look.silent.values())


def test_a_host_cut_off_the_underlay_fences_and_its_peers_do_not(fabric: Fabric) -> None:
    h1, h2, h3 = (fabric.hosts[name] for name in ("h1", "h2", "h3"))
    for host in (h1, h2, h3):
        wait_until(f"{host.name} hears its peers", lambda host=host: _sees_all(host), 5.0)  # type: ignore[misc]
    wait_until("h3's VMs run", lambda: h3.look().running == h3.vms, 5.0)

    cut = time.monotonic()
    fabric.cut("h3")
    gone = wait_until("h3's VMs are stopped", lambda: not h3.look().running, BOUND + 2.0)
    assert gone - cut <= BOUND, f"fenced {gone - cut:.2f} s after the cut"
    time.sleep(max(0.0, cut + FENCE_SECONDS + 1.0 - time.monotonic()))

    seen_by_h3 = h3.look()
    assert seen_by_h3.fenced
    assert not seen_by_h3.may_start
    assert all(seconds > FENCE_SECONDS for seconds in seen_by_h3.silent.values())
    for host in (h1, h2):
        look = host.look()
        assert not look.fenced, f"{host.name} fenced"
        assert look.running == host.vms
        assert look.silent["h3"] > FENCE_SECONDS
        other = "h2" if host is h1 else "h1"
        assert look.silent[other] < 2 * PROBE_INTERVAL

    # Back on the underlay, h3 hears its peers again, but it stays fenced: only the
    # control plane can tell it whether its VMs are still its own.
    fabric.mend("h3", 3)
    wait_until("h3 hears its peers again", lambda: _sees_all(h3), 5.0)
    look = h3.look()
    assert look.fenced
    assert not look.may_start
    assert look.running == []

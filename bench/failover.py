"""How long the VMs of a host that loses its power take to answer SSH on other hosts.

    .venv/bin/python bench/failover.py [--quick]        (root)

The cloud is the e2e harness's (`tests/e2e/cloud.py`): the control plane in the root
namespace and three hosts, each a network namespace running a real `nubis agent`,
with the default timing (unreachable 5 s, fence 10 s, dead 20 s). The tiny guest
image is built from the cached Debian packages and runs under TCG. The VMs are made
on one host (the others drained meanwhile, then undrained) and each answers SSH; then
that host loses its power: its agent and every process in its namespace (QEMU, radvd)
get SIGKILL at once, at t0. For each VM, followed by a thread of its own:

- failover to SSH: from t0 to `ssh root@<address> hostname` answering with the VM's
  name from another host (NIC 0's address is in its host's /64, so the new one comes
  from the API);
- on the way: when its host was declared dead (the VM's `host dead` event), when it
  was placed again (`placed`), when its QEMU ran on the new host, when its kernel
  started (`kernel`: firmware and boot loader before it), and when its console said
  the kernel ran /init, the guest got its metadata and its SSH server listens.

A sampler looks at the hosts' QEMU processes (`-name guest=<vm id>`) and their consoles
every 0.2 s from before the kill to the end; a VM seen running on two hosts at once is
a double run (the dead host's QEMUs are killed at t0, so there must be none).

`--quick`: one round of 3 VMs (under 3 minutes); else 3 rounds, each on a new cloud.
The last line of output is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nubis.config import Settings  # noqa: E402
from nubis.guestimage import guest, tiny  # noqa: E402
from tests.e2e import guests, namespaces  # noqa: E402
from tests.e2e.cloud import Cloud, Host  # noqa: E402
from tests.e2e.processes import checked, command_line  # noqa: E402

HOSTS = 3
VICTIM = "h1"
VMS = 3
ROUNDS = 3
MEMORY = "128M"
SAMPLE_SECONDS = 0.2
POLL_SECONDS = 0.2
API_POLL_SECONDS = 0.5
BOOT_SECONDS = 120.0
"""From the create request to SSH, for the VMs booting together on the victim."""
FAILOVER_SECONDS = 120.0
"""From the power loss to SSH on another host, before a VM counts as lost."""


MILESTONES = {
    "init": "Run /init as init process",
    "metadata": f"{guest.MARKER} config from the metadata service",
    "ready": guest.READY_MARKER,
}
"""What the guest's console says on the way to SSH, and the name of each step."""
INIT_TIME = re.compile(r"\[\s*(\d+\.\d+)\] Run /init as init process")
"""The kernel's own time of its /init line: the kernel started that long before."""
STEPS = ("qemu", "kernel", *MILESTONES)
"""What the sampler times on a VM's new host; `kernel` is when the kernel started (the
time of the /init line less the kernel's time in it): before it, firmware and boot
loader."""


@dataclass
class Failover:
    """One VM of a round: where it ran, and when (seconds after t0) it came back."""

    name: str
    id: str
    address: str
    host: str = ""
    """The host it came back on (its id, then its name)."""
    ssh: float | None = None
    figures: dict[str, float | None] = field(default_factory=dict)


class Sampler(threading.Thread):
    """Every SAMPLE_SECONDS, which of the cloud's hosts run a QEMU of which VM, and what
    its console said so far."""

    def __init__(self, cloud: Cloud, vm_ids: set[str]) -> None:
        super().__init__(daemon=True)
        self.cloud = cloud
        self.vm_ids = vm_ids
        self.hosts: dict[tuple[int, int], Host] = {}
        for host in cloud.hosts.values():
            found = os.stat(f"/run/netns/{host.namespace}")
            self.hosts[(found.st_dev, found.st_ino)] = host
        self.stopping = threading.Event()
        self.failure: Exception | None = None
        self.samples = 0
        self.doubles: dict[str, set[str]] = {}
        """VM id: the hosts it ran on at once."""
        self.first_seen: dict[tuple[str, str, str], float] = {}
        """(VM id, host, "qemu" or a milestone): the monotonic time it was first seen."""

    def run(self) -> None:
        try:
            while True:
                self.sample()
                if self.stopping.wait(SAMPLE_SECONDS):
                    return
        except Exception as error:
            self.failure = error
            raise

    def stop(self) -> None:
        """Stop sampling; a sampler that died on the way fails the round: it did not see
        what it was there to see."""
        self.stopping.set()
        self.join()
        if self.failure is not None:
            raise RuntimeError("the QEMU sampler died: double runs unknown") from self.failure

    def sample(self) -> None:
        at = time.monotonic()
        running: dict[str, set[str]] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            argv = command_line(int(entry.name)) or []
            vm = next((b[6:] for a, b in pairwise(argv) if a == "-name" and b[:6] == "guest="), "")
            if vm not in self.vm_ids:
                continue
            try:
                found = os.stat(f"/proc/{entry.name}/ns/net")
            except OSError:
                continue
            host = self.hosts.get((found.st_dev, found.st_ino))
            if host is not None:
                running.setdefault(vm, set()).add(host.name)
        self.samples += 1
        for vm, hosts in running.items():
            for name in hosts:
                self.first_seen.setdefault((vm, name, "qemu"), at)
                self._read_console(vm, self.cloud.host(name), at)
            if len(hosts) > 1:
                if vm not in self.doubles:
                    say(f"DOUBLE RUN: {vm} runs on {', '.join(sorted(hosts))}")
                self.doubles.setdefault(vm, set()).update(hosts)

    def _read_console(self, vm: str, host: Host, at: float) -> None:
        if all((vm, host.name, step) in self.first_seen for step in MILESTONES):
            return
        try:
            console = (host.state_dir / "vms" / vm / "serial.log").read_text(errors="replace")
        except OSError:
            return
        for step, words in MILESTONES.items():
            if words in console:
                self.first_seen.setdefault((vm, host.name, step), at)
        init = INIT_TIME.search(console)
        if init is not None:
            self.first_seen.setdefault((vm, host.name, "kernel"), at - float(init[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of 3 VMs (under 3 min)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run this as root: the cloud's hosts are network namespaces")
    missing = [tool for tool in guests.TOOLS if shutil.which(tool) is None]
    if missing:
        sys.exit(f"missing tools: {', '.join(missing)}")
    began = time.monotonic()
    defaults = Settings.model_fields
    say(
        f"timing: unreachable {defaults['host_unreachable_seconds'].default:g} s, "
        f"fence {defaults['host_fence_seconds'].default:g} s, "
        f"dead {defaults['host_dead_seconds'].default:g} s; agent interval 1 s"
    )
    rounds = 1 if args.quick else ROUNDS
    failovers: list[Failover] = []
    doubles = samples = 0
    with tempfile.TemporaryDirectory(prefix="nubis-failover-") as scratch:
        image = tiny.build(Path(scratch) / "tiny.qcow2")
        say(f"tiny image built in {time.monotonic() - began:.1f} s")
        for number in range(1, rounds + 1):
            done, sampler = run_round(number, image)
            failovers += done
            doubles += len(sampler.doubles)
            samples += sampler.samples
    times = [vm.ssh for vm in failovers if vm.ssh is not None]
    figures: dict[str, Any] = {
        "failover_to_ssh_p50_s": _median(times),
        "failover_to_ssh_max_s": round(max(times), 1) if len(times) == len(failovers) else None,
        "double_runs": doubles,
        "vms": len(failovers),
        "vms_lost": len(failovers) - len(times),
        "rounds": rounds,
    }
    for step in ("dead", "placed", *STEPS):
        figures[f"{step}_p50_s"] = _median([vm.figures.get(step) for vm in failovers])
    figures["samples"] = samples
    figures["wall_s"] = round(time.monotonic() - began, 1)
    print(json.dumps(figures), flush=True)
    if doubles or len(times) != len(failovers):
        sys.exit(1)


def _median(values: Sequence[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return round(statistics.median(known), 1) if known else None


def run_round(number: int, image: Path) -> tuple[list[Failover], Sampler]:
    """A new cloud, VMs on its victim host, the victim's power loss; each VM's figures."""
    started = time.monotonic()
    with Cloud(HOSTS) as cloud:
        say(f"round {number}: cloud {cloud.suffix} up in {time.monotonic() - started:.1f} s")
        checked(cloud.admin("image", "add", str(image), "--name", guests.IMAGE))
        guests.add_key(cloud)
        token = token_of(cloud)
        failovers = on_victim(cloud, token, [f"r{number}vm{i}" for i in range(1, VMS + 1)])
        sampler = Sampler(cloud, {vm.id for vm in failovers})
        sampler.start()
        time.sleep(1.0)  # samples from before the kill
        wall, t0 = power_off(cloud.host(VICTIM))
        say(f"round {number}: {VICTIM} lost its power")
        host_ids = {row["name"]: row["id"] for row in cloud.admin_json("host", "list")}
        try:
            with ThreadPoolExecutor(VMS) as pool:
                victim, key = host_ids[VICTIM], guests.key_of(cloud)
                list(
                    pool.map(
                        lambda vm: follow(client(cloud, token), vm, victim, key, t0), failovers
                    )
                )
        finally:
            sampler.stop()
        api = client(cloud, token)
        host_names = {ident: name for name, ident in host_ids.items()}
        for vm in failovers:
            vm.host = host_names.get(vm.host, vm.host)
            vm.figures = events(api, vm, wall)
            for step in STEPS:
                seen = sampler.first_seen.get((vm.id, vm.host, step))
                vm.figures[step] = round(seen - t0, 1) if seen is not None else None
            vm.figures["ssh"] = round(vm.ssh, 1) if vm.ssh is not None else None
            steps = ", ".join(f"{k} {'-' if v is None else f'{v:.1f}'}" for k, v in
                              vm.figures.items())  # fmt: skip
            say(f"round {number}: {vm.name} on {vm.host or '?'} (s after the kill): {steps}")
        say(f"round {number}: {sampler.samples} samples, double runs: {len(sampler.doubles)}")
    return failovers, sampler


def on_victim(cloud: Cloud, token: str, names: list[str]) -> list[Failover]:
    """VMs made on the victim host, once each answers SSH there."""
    others = [name for name in cloud.hosts if name != VICTIM]
    # The victim takes all the VMs: more vCPUs than its cores, and the others none.
    checked(cloud.admin("host", "overcommit", VICTIM, "--cpu", "4"))
    together(cloud, [["host", "drain", name] for name in others])
    api, key = client(cloud, token), guests.key_of(cloud)
    sent = time.monotonic()
    failovers = [Failover(vm["name"], vm["id"], address_of(vm)) for vm in map(create(api), names)]
    with ThreadPoolExecutor(len(names)) as pool:
        booted = max(pool.map(lambda vm: wait_ssh(key, vm.address, vm.name, sent), failovers))
    say(f"{len(names)} VMs answer SSH on {VICTIM} {booted:.1f} s after their create requests")
    together(cloud, [["host", "undrain", name] for name in others])
    return failovers


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def together(cloud: Cloud, commands: list[list[str]]) -> None:
    """Admin commands at once (each costs a Python start-up)."""
    with ThreadPoolExecutor(len(commands)) as pool:
        for done in pool.map(lambda argv: cloud.admin(*argv), commands):
            checked(done)


def token_of(cloud: Cloud) -> str:
    """A new API token of the user's."""
    secret: str = cloud.cli_json("token", "create", "bench")["secret"]
    return secret


def client(cloud: Cloud, token: str) -> httpx.Client:
    """An HTTP client of the API in the user's project (one per thread)."""
    return httpx.Client(
        base_url=f"{cloud.api_url}/v1/projects/{Cloud.project()}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def create(api: httpx.Client) -> Callable[[str], dict[str, Any]]:
    """Creates a VM of that name (one vCPU, the tiny image)."""

    def made(name: str) -> dict[str, Any]:
        answer = api.post(
            "/vms", json={"name": name, "image": guests.IMAGE, "cores": 1, "memory": MEMORY}
        )
        answer.raise_for_status()
        vm: dict[str, Any] = answer.json()
        return vm

    return made


def address_of(vm: dict[str, Any]) -> str:
    """NIC 0's address: in its host's /64."""
    address: str = next(nic["address"] for nic in vm["nics"] if nic["number"] == 0)
    return address


def power_off(host: Host) -> tuple[float, float]:
    """SIGKILL the host's agent (its process group) and every process in its namespace
    at once, as a power loss does; the wall and monotonic times of the kill."""
    assert host.agent is not None
    inside = namespaces.pids_in(host.namespace)
    wall, t0 = time.time(), time.monotonic()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(host.agent.pid, signal.SIGKILL)
    for pid in inside:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    namespaces.kill_everything_in(host.namespace)  # anything that forked meanwhile
    host.kill_agent()  # reaps it
    return wall, t0


def follow(api: httpx.Client, vm: Failover, victim: str, key: Path, t0: float) -> None:
    """Until the VM answers SSH from another host (or FAILOVER_SECONDS pass)."""
    deadline = t0 + FAILOVER_SECONDS
    address = ""
    while time.monotonic() < deadline:
        if not address:
            try:
                shown = api.get(f"/vms/{vm.id}").raise_for_status().json()
            except httpx.HTTPError as error:
                say(f"  {vm.name}: {error!r}, asking again")
                time.sleep(API_POLL_SECONDS)
                continue
            if shown["host"] not in (None, victim) and address_of(shown) != vm.address:
                vm.host, address = shown["host"], address_of(shown)
            else:
                time.sleep(API_POLL_SECONDS)
                continue
        if listening(address) and ssh_hostname(key, address) == vm.name:
            vm.ssh = time.monotonic() - t0
            say(f"  {vm.name} answers SSH at {address} after {vm.ssh:.1f} s")
            return
        time.sleep(POLL_SECONDS)
    say(f"  {vm.name} did not answer SSH within {FAILOVER_SECONDS:g} s (at {address or '?'})")


def listening(address: str) -> bool:
    """Whether the guest's SSH port takes a connection (cheaper than an `ssh` run)."""
    try:
        with socket.create_connection((address, 22), timeout=1.0):
            return True
    except OSError:
        return False


def ssh_hostname(key: Path, address: str) -> str | None:
    command = [
        "ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "ConnectTimeout=3",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR", f"root@{address}", "hostname",
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except subprocess.TimeoutExpired:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def wait_ssh(key: Path, address: str, name: str, sent: float) -> float:
    """Seconds from `sent` until the VM answers SSH with its name."""
    deadline = sent + BOOT_SECONDS
    while time.monotonic() < deadline:
        if listening(address) and ssh_hostname(key, address) == name:
            return time.monotonic() - sent
        time.sleep(POLL_SECONDS)
    sys.exit(f"{name} did not answer SSH at {address} within {BOOT_SECONDS:g} s")


def events(api: httpx.Client, vm: Failover, wall: float) -> dict[str, float | None]:
    """When (seconds after the kill) the VM's log says its host died and it was placed
    again."""
    listed = api.get(f"/vms/{vm.id}/events", params={"limit": 500}).json()["items"]
    figures: dict[str, float | None] = {"dead": None, "placed": None}
    for event in listed:
        at = datetime.fromisoformat(event["at"])
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        after = at.timestamp() - wall
        if after < 0:
            continue
        kind = {"host dead": "dead", "placed": "placed"}.get(event["kind"])
        if kind is not None and figures[kind] is None:
            figures[kind] = round(after, 1)
    return figures


if __name__ == "__main__":
    main()

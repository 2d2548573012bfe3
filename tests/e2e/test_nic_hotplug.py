"""Project NICs of a real tiny guest under TCG: plugged into a running VM and taken out
again with `sync_nics`, and present from boot; each configured by the guest as its
network says (SLAAC from radvd, or the address the metadata service tells it), the
metadata service found on whichever NIC has it.

The host is a network namespace with the host network's bridge (guard, radvd, the
metadata service) and two project network bridges: one announced by radvd (`auto`),
one not (`manual`). Everything is named after this run and removed afterwards, even
when a test fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nubis.addresses import eui64_address, stable_mac
from nubis.agent.disk import info, make_overlay
from nubis.agent.qemu import process
from nubis.agent.qemu.hotplug import PERIPHERALS, sync_nics
from nubis.agent.qemu.monitor import Monitor
from nubis.agent.qemu.paths import VmPaths
from nubis.agent.seed import write_seed
from nubis.guestimage import guest
from nubis.protocol import (
    NETWORK_MTU,
    FirewallRule,
    HostNetwork,
    ImageRef,
    Ipam,
    Network,
    Nic,
    VmSpec,
)
from tests.e2e.namespaces import ping_argv

TOOLS = (
    "qemu-system-x86_64", "qemu-img", "mkfs.vfat", "mcopy", "syslinux", "apt-get",
    "dpkg-deb", "ip", "nft", "radvd",
)  # fmt: skip
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in TOOLS), reason=f"needs {', '.join(TOOLS)}"
    ),
]

REPO = Path(__file__).resolve().parents[2]
HOST_PREFIX = "fd00:6e75:6273:10::/64"
AUTO_PREFIX = "fd00:6e75:6273:11::/64"
MANUAL_PREFIX = "fd00:6e75:6273:12::/64"
BOOT_TIMEOUT = 60.0
ADDRESS_TIMEOUT = 30.0
UNPLUG_TIMEOUT = 30.0
MIB = 1024 * 1024

# In the namespace: the bridges, the taps, the guard of every NIC (as the agent guards
# them; it marks the host bridge's frames for the metadata service), radvd on the host
# and the auto network, the service.
HOST = """
import json, sys
from pathlib import Path
from nubis.agent.net import guard, links
from nubis.agent.net.metadata import MetadataService, by_mark
from nubis.agent.net.radvd import Radvd
from nubis.protocol import HostNetwork, Network, VmSpec
data = json.loads(sys.stdin.readline())
host = HostNetwork.model_validate(data["host"])
networks = {n["id"]: Network.model_validate(n) for n in data["networks"]}
vm = VmSpec.model_validate(data["vm"])
links.ensure_bridge(host)
for network in networks.values():
    links.ensure_project_bridge(network)
guarded = []
for nic in vm.nics:
    bridge = host.bridge if nic.network is None else networks[nic.network].bridge
    bridge = data["bridges"].get(nic.tap, bridge)
    links.ensure_tap(nic.tap, bridge, nic.mtu)
    # A NIC put on the host bridge is guarded as the host network's: its frames are
    # marked for the metadata service.
    guarded.append(nic.model_copy(update={"network": None}) if bridge == host.bridge else nic)
vm_as_plugged = vm.model_copy(update={"nics": guarded})
guard.apply(guard.ruleset(guard.guarded([vm_as_plugged], networks.values())))
state = Path(data["state_dir"])
Radvd(state, host.bridge).ensure(host)
for network in networks.values():
    if network.ipam == "auto":
        Radvd(state, network.bridge).ensure(network)
service = MetadataService(host.bridge, by_mark([vm]).get, network_of=networks.get)
service.start()
print("ready", flush=True)
sys.stdin.read()
service.stop()
"""

START_VM = """
import json, sys
from pathlib import Path
from nubis.agent.qemu import process
from nubis.agent.qemu.paths import VmPaths
from nubis.protocol import VmSpec
data = json.load(sys.stdin)
spec = VmSpec.model_validate(data["vm"])
print(process.start(spec, VmPaths.of(Path(data["root"]), spec.id), "tcg"))
"""


def run(*argv: str, stdin: str | None = None, timeout: float = 60) -> str:
    done = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO
    )
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr}")
    return done.stdout


@dataclass
class Site:
    """A host namespace with the host network and two project networks."""

    run_id: str
    namespace: str
    root: Path
    host: HostNetwork
    auto: Network
    manual: Network
    servers: list[subprocess.Popen[str]] = field(default_factory=list)
    vms: list[VmPaths] = field(default_factory=list)

    def vm(self, networks: list[Network]) -> VmSpec:
        """A VM spec with NIC 0 on the host network and then one NIC per network."""
        vm_id = f"vm-hp{uuid.uuid4().hex[:10]}"
        nics = []
        for number, network in enumerate([None, *networks]):
            mac = stable_mac(vm_id, number)
            prefix = HOST_PREFIX if network is None else network.prefix
            assert prefix is not None
            nics.append(
                Nic(
                    tap=f"nt{vm_id[-8:]}{number}",
                    number=number,
                    mac=mac,
                    address=eui64_address(prefix, mac),
                    network=None if network is None else network.id,
                    ipam=Ipam.AUTO if network is None else network.ipam,
                    mtu=None if network is None else network.mtu,
                )
            )
        return VmSpec(
            id=vm_id,
            hostname="hotplug",
            cores=1,
            memory_bytes=256 * MIB,
            disk_bytes=64 * MIB,
            image=ImageRef(id="img-tiny", sha256="0" * 64, size_bytes=1, virtual_size_bytes=1),
            running=True,
            reboots=0,
            nics=nics,
            ssh_keys=[],
        )

    def serve(self, vm: VmSpec, bridges: dict[str, str] | None = None) -> None:
        """Make the links of every NIC of `vm` and serve it metadata. `bridges`: taps
        put on another bridge than their network's."""
        server = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, sys.executable, "-c", HOST],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        self.servers.append(server)
        assert server.stdin is not None and server.stdout is not None
        setup = {
            "host": self.host.model_dump(),
            "networks": [self.auto.model_dump(), self.manual.model_dump()],
            "vm": vm.model_dump(),
            "state_dir": str(self.root / "agent"),
            "bridges": bridges or {},
        }
        server.stdin.write(json.dumps(setup) + "\n")
        server.stdin.flush()
        assert server.stdout.readline() == "ready\n"

    def start(self, vm: VmSpec, image: Path) -> VmPaths:
        paths = VmPaths.of(self.root / "vms", vm.id)
        self.vms.append(paths)
        make_overlay(image, paths.disk, vm.disk_bytes, int(str(info(image)["virtual-size"])))
        write_seed(vm, paths.seed)
        request = json.dumps({"vm": vm.model_dump(), "root": str(self.root / "vms")})
        run("ip", "netns", "exec", self.namespace, sys.executable, "-c", START_VM, stdin=request)
        return paths

    def pings(self, address: str, timeout: float) -> bool:
        done = subprocess.run(
            ["ip", "netns", "exec", self.namespace, *ping_argv(address, timeout)],
            capture_output=True,
            timeout=timeout + 10,
            check=False,
        )
        return done.returncode == 0


@pytest.fixture
def site() -> Iterator[Site]:
    run_id = uuid.uuid4().hex[:6]
    # Not pytest's tmp_path: its long names could push sockets past 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="nubis-e2e-"))
    host = HostNetwork(
        bridge=f"nb{run_id}", prefix=HOST_PREFIX, gateway=HOST_PREFIX.replace("/64", "1")
    )

    def network(ipam: Ipam, prefix: str, letter: str, vni: int) -> Network:
        return Network(
            id=f"net-{letter}{run_id}",
            bridge=f"nb{run_id}{letter}",
            vxlan=f"nx{run_id}{letter}",
            vni=vni,
            ipam=ipam,
            prefix=prefix,
            gateway=prefix.replace("/64", "1"),
            mac=stable_mac(f"nb{run_id}{letter}", 0),
            mtu=NETWORK_MTU,
            # The host pings the guest from outside the network: its firewall lets it.
            rules=[FirewallRule(protocol="icmp", source="::/0")],
        )

    site = Site(
        run_id,
        f"nbt-{run_id}-hp",
        root,
        host,
        network(Ipam.AUTO, AUTO_PREFIX, "a", 11),
        network(Ipam.MANUAL, MANUAL_PREFIX, "m", 12),
    )
    try:
        run("ip", "netns", "add", site.namespace)
        run("ip", "-n", site.namespace, "link", "set", "lo", "up")
        yield site
    finally:
        for paths in site.vms:
            with suppress(Exception):
                process.kill(paths)
        for server in site.servers:
            server.kill()
            server.wait()
        # What still runs in the namespace was started by this test (radvd, QEMU).
        pids = subprocess.run(
            ["ip", "netns", "pids", site.namespace], capture_output=True, text=True, check=False
        ).stdout.split()
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(int(pid), 9)
        subprocess.run(["ip", "netns", "del", site.namespace], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


def _console(paths: VmPaths) -> str:
    return paths.serial_log.read_text(errors="replace") if paths.serial_log.exists() else ""


def _wait_for(paths: VmPaths, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in _console(paths):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} within {timeout} s:\n{_console(paths)[-3000:]}")
        if not process.running(paths):
            raise AssertionError(f"the guest's QEMU exited:\n{_console(paths)[-3000:]}")
        time.sleep(0.2)


def _wait_for_match(paths: VmPaths, pattern: str, timeout: float = ADDRESS_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, _console(paths)):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {pattern!r} within {timeout} s:\n{_console(paths)[-3000:]}")
        time.sleep(0.2)


def _devices(paths: VmPaths) -> list[str]:
    answer = Monitor(paths.qmp).execute("qom-list", {"path": PERIPHERALS})
    assert isinstance(answer, list)
    return sorted(str(entry["name"]) for entry in answer if str(entry["name"]).startswith("nic"))


def test_nics_plugged_into_a_running_guest_take_their_addresses_and_unplugged_leave_it(
    site: Site, tiny_image: Path
) -> None:
    full = site.vm([site.auto, site.manual])
    first = full.model_copy(update={"nics": full.nics[:1]})
    site.serve(full)
    paths = site.start(first, tiny_image)
    _wait_for(paths, guest.READY_MARKER, BOOT_TIMEOUT)
    assert _devices(paths) == ["nic0"]

    assert sync_nics(full, paths, "tcg") is False
    assert _devices(paths) == ["nic0", "nic1", "nic2"]
    # Again, as an agent that does not know it did it already: nothing changes.
    assert sync_nics(full, paths, "tcg") is False
    # The auto NIC by SLAAC from the network's radvd, the manual one as it is told by
    # the metadata service (which of eth1 and eth2 is which is the guest's business).
    for plugged in full.nics[1:]:
        assert plugged.address is not None
        _wait_for_match(paths, rf"nubis-tiny: address eth[12] {plugged.address}/64")
        assert site.pings(plugged.address, 10)

    began = time.monotonic()
    calls = 0
    while sync_nics(first, paths, "tcg"):
        calls += 1
        assert time.monotonic() - began < UNPLUG_TIMEOUT, "the guest did not let go"
        time.sleep(0.5)
    print(f"unplugged after {calls} more calls, {time.monotonic() - began:.1f} s")
    assert _devices(paths) == ["nic0"]
    assert not paths.unplugging.exists()
    assert sync_nics(first, paths, "tcg") is False
    _wait_for(paths, "nubis-tiny: nic eth1 removed", 10)
    _wait_for(paths, "nubis-tiny: nic eth2 removed", 10)
    for plugged in full.nics[1:]:
        assert plugged.address is not None
        assert not site.pings(plugged.address, 2)


def test_a_guest_started_with_a_manual_nic_has_both_and_sets_the_address_it_is_told(
    site: Site, tiny_image: Path
) -> None:
    vm = site.vm([site.manual])
    site.serve(vm)
    paths = site.start(vm, tiny_image)
    _wait_for(paths, guest.READY_MARKER, BOOT_TIMEOUT)
    assert _devices(paths) == ["nic0", "nic1"]
    # The NICs QEMU was started with are the ones sync_nics makes.
    assert sync_nics(vm, paths, "tcg") is False
    assert _devices(paths) == ["nic0", "nic1"]

    manual = vm.nics[1]
    assert manual.address is not None
    console = _console(paths)
    assert "nubis-tiny: config from the metadata service" in console
    _wait_for(paths, f"nubis-tiny: address eth1 {manual.address}/64", ADDRESS_TIMEOUT)
    assert site.pings(manual.address, 10)
    assert f"nubis-tiny: address eth0 {vm.nics[0].address}/64" in _console(paths)


def test_a_guest_finds_the_metadata_service_on_whichever_nic_has_it(
    site: Site, tiny_image: Path
) -> None:
    vm = site.vm([site.manual])
    # Cabled the other way round: eth0 on the manual network's bridge, where no
    # metadata service answers; the second NIC on the host's.
    site.serve(vm, {vm.nics[0].tap: site.manual.bridge, vm.nics[1].tap: site.host.bridge})
    paths = site.start(vm, tiny_image)
    _wait_for(paths, guest.READY_MARKER, BOOT_TIMEOUT)
    console = _console(paths)
    assert "nubis-tiny: config from the metadata service at http://169.254.169.254" in console
    # What it was told for the NIC with that MAC (the manual one), wherever it sits.
    _wait_for_match(paths, rf"nubis-tiny: address eth1 {vm.nics[1].address}/64")

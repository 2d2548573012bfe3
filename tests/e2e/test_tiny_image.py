"""The tiny guest image for real: built from Debian packages, booted under TCG by the
agent's own QEMU code on a tap in a network namespace that plays the host (bridge,
guard, radvd and, for one test, the metadata service), then reached over SSH at the
address the control plane predicts; its variant with the tools of a hostile guest,
seen sending what the guard must stop; and the acceleration probe, run here.

Everything is named after this run and removed afterwards, even when a test fails.
"""

from __future__ import annotations

import json
import os
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

from nubis.addresses import eui64_address, link_local, stable_mac
from nubis.agent import hardware
from nubis.agent.disk import info, make_overlay
from nubis.agent.qemu import process
from nubis.agent.qemu.paths import VmPaths
from nubis.agent.seed import write_seed
from nubis.guestimage import guest, tiny
from nubis.protocol import HostNetwork, ImageRef, Nic, VmSpec
from tests.e2e.capture import OUTGOING, capture

TOOLS = (
    "qemu-system-x86_64", "qemu-img", "mkfs.vfat", "mcopy", "syslinux", "apt-get",
    "dpkg-deb", "ip", "nft", "radvd", "ssh", "ssh-keygen",
)  # fmt: skip
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in TOOLS), reason=f"needs {', '.join(TOOLS)}"
    ),
]

REPO = Path(__file__).resolve().parents[2]
PREFIX = "fd00:6e75:6273:7::/64"
GATEWAY = "fd00:6e75:6273:7::1"
BOOT_TIMEOUT = 60.0
SSH_TIMEOUT = 20.0
MIB = 1024 * 1024

HOST_SETUP = """
import json, sys
from pathlib import Path
from nubis.agent.net import guard, links
from nubis.agent.net.radvd import Radvd
from nubis.protocol import HostNetwork, VmSpec
data = json.load(sys.stdin)
network = HostNetwork.model_validate(data["network"])
vm = VmSpec.model_validate(data["vm"])
links.ensure_bridge(network)
links.ensure_tap(vm.nics[0].tap, network.bridge)
guard.apply(guard.ruleset(guard.guarded([vm])))
Radvd(Path(data["state_dir"]), network.bridge).ensure(network)
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

SERVE_METADATA = """
import json, sys
from nubis.agent.net.metadata import MetadataService, by_mark
from nubis.protocol import VmSpec
data = json.loads(sys.stdin.readline())
vms = by_mark([VmSpec.model_validate(data["vm"])])
service = MetadataService(data["bridge"], vms.get)
service.start()
print("ready", flush=True)
sys.stdin.read()
service.stop()
"""


def run(*argv: str, stdin: str | None = None, timeout: float = 60) -> str:
    done = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO
    )
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr}")
    return done.stdout


@pytest.fixture(scope="session")
def tiny_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build(tmp_path_factory.mktemp("tiny") / "tiny.qcow2")


@pytest.fixture(scope="session")
def hostile_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "hostile.qcow2"
    return tiny.build(path, extra_packages=tiny.HOSTILE_TOOLS)


@dataclass(frozen=True)
class Key:
    private: Path
    public: str


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Key:
    private = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "e2e@nubis", "-f", str(private))
    return Key(private, private.with_suffix(".pub").read_text().strip())


@dataclass
class Site:
    """A host namespace with the VM network, and at most one VM on it."""

    namespace: str
    network: HostNetwork
    root: Path
    servers: list[subprocess.Popen[str]] = field(default_factory=list)
    vms: list[VmPaths] = field(default_factory=list)

    def prepare(self, vm: VmSpec) -> None:
        setup = {
            "network": self.network.model_dump(),
            "vm": vm.model_dump(),
            "state_dir": str(self.root / "agent"),
        }
        run("ip", "netns", "exec", self.namespace, sys.executable, "-c", HOST_SETUP,
            stdin=json.dumps(setup))  # fmt: skip

    def serve_metadata(self, vm: VmSpec) -> None:
        server = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, sys.executable, "-c", SERVE_METADATA],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        self.servers.append(server)
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write(json.dumps({"bridge": self.network.bridge, "vm": vm.model_dump()}))
        server.stdin.write("\n")
        server.stdin.flush()
        assert server.stdout.readline() == "ready\n"

    def start(self, vm: VmSpec, image: Path, seed: VmSpec) -> VmPaths:
        """Start `vm` on an overlay of `image` with the NoCloud seed of `seed`."""
        paths = VmPaths.of(self.root / "vms", vm.id)
        self.vms.append(paths)
        virtual_size = int(str(info(image)["virtual-size"]))
        make_overlay(image, paths.disk, vm.disk_bytes, virtual_size)
        write_seed(seed, paths.seed)
        # In the namespace, so that QEMU finds the tap there; it stays there once
        # daemonized, and is driven from anywhere through its unix sockets.
        request = json.dumps({"vm": vm.model_dump(), "root": str(self.root / "vms")})
        run("ip", "netns", "exec", self.namespace, sys.executable, "-c", START_VM, stdin=request)
        return paths

    def ssh(self, key: Key, address: str | None, command: str) -> subprocess.CompletedProcess[str]:
        assert address is not None, "the NIC has no address"
        return subprocess.run(
            ["ip", "netns", "exec", self.namespace, "ssh", "-i", str(key.private),
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
             f"root@{address}", command],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip


@pytest.fixture
def site() -> Iterator[Site]:
    run_id = uuid.uuid4().hex[:6]
    # Not pytest's tmp_path: its long names could push sockets past 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="nubis-e2e-"))
    network = HostNetwork(bridge=f"nb{run_id}", prefix=PREFIX, gateway=GATEWAY)
    site = Site(f"nbt-{run_id}-tiny", network, root)
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
        # Whatever still runs in the namespace was started by this test (radvd, QEMU);
        # a namespace is not gone while a process holds it.
        pids = subprocess.run(
            ["ip", "netns", "pids", site.namespace], capture_output=True, text=True, check=False
        ).stdout.split()
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(int(pid), 9)
        subprocess.run(["ip", "netns", "del", site.namespace], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


def _vm(hostname: str, keys: list[str]) -> VmSpec:
    vm_id = f"vm-tiny{uuid.uuid4().hex[:10]}"
    mac = stable_mac(vm_id, 0)
    return VmSpec(
        id=vm_id,
        hostname=hostname,
        cores=1,
        memory_bytes=256 * MIB,
        disk_bytes=64 * MIB,
        image=ImageRef(id="img-tiny", sha256="0" * 64, size_bytes=1, virtual_size_bytes=1),
        running=True,
        reboots=0,
        nics=[Nic(tap=f"nt{vm_id[-8:]}", number=0, mac=mac, address=eui64_address(PREFIX, mac))],
        ssh_keys=keys,
    )


def _console(paths: VmPaths) -> str:
    return paths.serial_log.read_text(errors="replace") if paths.serial_log.exists() else ""


def _wait_ready(paths: VmPaths) -> float:
    """Seconds from now until the guest said that ssh is ready."""
    began = time.monotonic()
    while guest.READY_MARKER not in _console(paths):
        if time.monotonic() - began > BOOT_TIMEOUT:
            raise AssertionError(f"no {guest.READY_MARKER!r} within {BOOT_TIMEOUT} s:\n"
                                 f"{_console(paths)[-3000:]}")  # fmt: skip
        if not process.running(paths):
            raise AssertionError(f"the guest's QEMU exited:\n{_console(paths)[-3000:]}")
        time.sleep(0.2)
    return time.monotonic() - began


def _ssh_hostname(site: Site, key: Key, vm: VmSpec) -> str:
    """What `hostname` says over SSH at the NIC's predicted address (SLAAC may still be
    finishing when the guest is otherwise ready)."""
    deadline = time.monotonic() + SSH_TIMEOUT
    while True:
        done = site.ssh(key, vm.nics[0].address, "hostname")
        if done.returncode == 0 or time.monotonic() > deadline:
            assert done.returncode == 0, done.stderr
            return done.stdout.strip()
        time.sleep(1)


def test_the_tiny_guest_boots_from_its_seed_serves_ssh_at_its_predicted_address_and_powers_off(
    site: Site, key: Key, tiny_image: Path
) -> None:
    vm = _vm("tiny-seeded", [key.public])
    site.prepare(vm)
    paths = site.start(vm, tiny_image, seed=vm)
    seconds = _wait_ready(paths)
    print(f"boot to ssh ready under TCG: {seconds:.1f} s")
    console = _console(paths)
    assert "nubis-tiny: config from the seed" in console
    assert f"nubis-tiny: hostname {vm.hostname}" in console
    assert f"nubis-tiny: address eth0 {vm.nics[0].address}/64" in console

    assert _ssh_hostname(site, key, vm) == vm.hostname

    # The agent stops a VM with the ACPI power button; the guest must act on it.
    assert process.stop(paths, timeout=30) == process.StopOutcome.POWERED_OFF


def test_the_tiny_guest_takes_its_hostname_and_keys_from_the_metadata_service(
    site: Site, key: Key, tiny_image: Path
) -> None:
    vm = _vm("tiny-from-metadata", [key.public])
    # The seed says otherwise and holds no key: only the metadata service's answers
    # let the SSH login through and name the guest.
    seed = vm.model_copy(update={"hostname": "tiny-from-seed", "ssh_keys": []})
    site.prepare(vm)
    site.serve_metadata(vm)
    paths = site.start(vm, tiny_image, seed=seed)
    _wait_ready(paths)
    assert "nubis-tiny: config from the metadata service" in _console(paths)
    assert _ssh_hostname(site, key, vm) == vm.hostname


FORGED_MAC = "02:00:00:00:06:66"
FORGED_ADDRESS = "fd00:6e75:6273:7::666"
ROGUE_PREFIX = "fd00:6e75:6273:666::/64"
# Run in the guest. The forged MAC comes last and in the background: the guard drops
# what the guest sends from then on, this SSH session too.
HOSTILE = f"""
echo 1 > /proc/sys/net/ipv6/conf/all/forwarding
printf 'interface eth0 {{ AdvSendAdvert on; prefix {ROGUE_PREFIX} {{ }}; }};\\n' > /tmp/radvd.conf
radvd -C /tmp/radvd.conf -p /tmp/radvd.pid -m stderr > /tmp/radvd.log 2>&1
echo advertise | nc.openbsd -u -w 1 -p 547 "$router%eth0" 546
echo 0 > /proc/sys/net/ipv6/conf/eth0/accept_dad
ip -6 addr add {FORGED_ADDRESS}/128 dev eth0
ping -c 2 -W 1 -I {FORGED_ADDRESS} {GATEWAY} > /dev/null 2>&1
(sleep 1; ip link set eth0 address {FORGED_MAC}; ping -c 3 -W 1 {GATEWAY}) > /dev/null 2>&1 &
echo sent
"""
ROUTER_ADVERTISEMENT = 134


def test_the_hostile_variant_sends_router_adverts_dhcp_answers_and_forged_addresses(
    site: Site, key: Key, hostile_image: Path
) -> None:
    vm = _vm("tiny-hostile", [key.public])
    site.prepare(vm)
    paths = site.start(vm, hostile_image, seed=vm)
    _wait_ready(paths)
    assert _ssh_hostname(site, key, vm) == vm.hostname
    with capture(site.namespace, vm.nics[0].tap) as seen:
        # A DHCPv6 answer goes to a client's link-local address: the bridge's here.
        router = link_local(stable_mac(site.network.bridge, 0))
        done = site.ssh(key, vm.nics[0].address, f"router={router}\n{HOSTILE}")
        assert done.stdout.strip() == "sent", done.stderr
        time.sleep(5)
    # What came from the guest (on the tap's host side: before the guard drops it).
    frames = [frame for frame in seen.frames if frame.kind != OUTGOING]
    mac = vm.nics[0].mac
    assert [f for f in frames if f.icmpv6_type == ROUTER_ADVERTISEMENT and f.source_mac == mac]
    assert [f for f in frames if f.udp_source_port == 547 and f.destination == router]
    assert [f for f in frames if f.source == FORGED_ADDRESS]
    assert [f for f in frames if f.source_mac == FORGED_MAC]


def _qemu_descendants() -> list[int]:
    """QEMU processes under this one (a probe left behind would be one)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        with suppress(OSError, ValueError, IndexError):
            parents[int(entry.name)] = int(
                (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            )

    def ours(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == os.getpid():
                return True
        return False

    found = []
    for pid in parents:
        with suppress(OSError):
            if ours(pid) and b"qemu-system" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


def test_the_probe_guest_reaches_userspace_under_tcg_and_is_killed_at_its_timeout() -> None:
    kernel, initrd = tiny.boot_files()
    assert hardware.boots_to_userspace(kernel, initrd, "tcg") is True
    began = time.monotonic()
    assert hardware.boots_to_userspace(kernel, initrd, "tcg", timeout=0.5) is False
    assert time.monotonic() - began < 5
    assert _qemu_descendants() == []


def test_the_acceleration_probe_answers_tcg_on_this_machine(tmp_path: Path) -> None:
    # /dev/kvm is here, and guests under it do not run: the probe must see that.
    assert hardware.acceleration(state_dir=tmp_path) == "tcg"
    verdict = json.loads((tmp_path / hardware.VERDICT_FILE).read_text())
    assert verdict["boot_id"] == hardware.BOOT_ID.read_text().strip()
    assert verdict["acceleration"] == "tcg"
    assert _qemu_descendants() == []

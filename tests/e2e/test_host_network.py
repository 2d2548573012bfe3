"""The host's VM network for real, with network namespaces for the host and two guests.

The host namespace gets the bridge, the guard, radvd and the metadata service, made by
the agent's own code; each guest is a namespace holding one end of a veth pair whose
other end, named like a tap, is a port of the bridge (QEMU guests come in other tests).
Everything is named after this run and removed afterwards, even when a test fails.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nubis.addresses import METADATA_IPV4, eui64_address, link_local, stable_mac
from nubis.protocol import HostNetwork, ImageRef, Nic, VmSpec
from tests.e2e import frames
from tests.e2e.capture import capture

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("ip", "nft", "radvd")),
    reason="needs root, iproute2, nftables and radvd",
)

REPO = Path(__file__).resolve().parents[2]
PREFIX = "fd00:6e75:6273:1::/64"
GATEWAY = "fd00:6e75:6273:1::1"
SINK_PORT = 9999
SLAAC_TIMEOUT = 15.0

HOST_SETUP = """
import json, sys
from pathlib import Path
from nubis.agent.net import guard, links
from nubis.agent.net.radvd import Radvd
from nubis.protocol import HostNetwork, VmSpec
data = json.load(sys.stdin)
network = HostNetwork.model_validate(data["network"])
vms = [VmSpec.model_validate(vm) for vm in data["vms"]]
links.ensure_bridge(network)
for vm in vms:
    for nic in vm.nics:
        links.ensure_tap(nic.tap, network.bridge)
guard.apply(guard.ruleset(guard.guarded(vms)))
Radvd(Path(data["state_dir"]), network.bridge).ensure(network)
"""

GUARD = """
import json, sys
from nubis.agent.net import guard
from nubis.protocol import VmSpec
vms = [VmSpec.model_validate(vm) for vm in json.load(sys.stdin)]
guard.apply(guard.ruleset(guard.guarded(vms)) if vms else guard.removal())
"""

SERVE_METADATA = """
import json, sys
from nubis.agent.net.metadata import MetadataService, by_mark
from nubis.protocol import VmSpec
data = json.loads(sys.stdin.readline())
vms = by_mark(VmSpec.model_validate(vm) for vm in data["vms"])
service = MetadataService(data["bridge"], vms.get)
service.start()
print("ready", flush=True)
sys.stdin.read()
service.stop()
"""

FETCH = """
import http.client, json, sys
answers = []
for host, path in json.loads(sys.argv[1]):
    connection = http.client.HTTPConnection(host, 80, timeout=float(sys.argv[2]))
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        answers.append([response.status, response.read().decode()])
    except OSError as error:
        answers.append([0, str(error)])
print(json.dumps(answers))
"""

# Counts the TCP segments from the metadata service's IPv6 address that reach eth0.
SNIFF = """
import socket, sys, time
frames = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86DD))
frames.bind(("eth0", 0))
frames.settimeout(0.1)
service = socket.inet_pton(socket.AF_INET6, "fe80::a9fe:a9fe")
print("ready", flush=True)
seen = 0
deadline = time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline:
    try:
        packet = frames.recv(4096)[14:]
    except TimeoutError:
        continue
    if packet[6] == 6 and packet[8:24] == service and packet[40:42] == (80).to_bytes(2, "big"):
        seen += 1
print(seen, flush=True)
"""

# Writes each datagram it gets on the bridge to a file, a line each.
SINK = """
import socket, sys, threading
sink = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
sink.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, sys.argv[1].encode())
sink.bind(("::", int(sys.argv[2])))
def receive():
    with open(sys.argv[3], "a") as out:
        while True:
            data, _ = sink.recvfrom(2048)
            out.write(data.decode() + "\\n")
            out.flush()
threading.Thread(target=receive, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""

SEND = """
import socket, sys
source, destination, port, payload = sys.argv[1:]
sender = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
sender.bind((source, 0))
sender.sendto(payload.encode(), (destination, int(port)))
"""

# An ICMPv6 message to all nodes on eth0, as a router would send it (hop limit 255);
# the kernel fills in the checksum and the link-local source.
SEND_ICMPV6 = """
import socket, sys
scope = socket.if_nametoindex("eth0")
sender = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
sender.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
sender.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, scope)
for _ in range(3):
    sender.sendto(bytes.fromhex(sys.argv[1]), ("ff02::1", 0, 0, scope))
"""


def neighbour_advertisement(target: str, mac: str) -> bytes:
    """An unsolicited NA that overrides whatever a neighbour has for `target`."""
    override = 0x2000_0000
    option = bytes([2, 1]) + bytes.fromhex(mac.replace(":", ""))
    return (
        bytes([136, 0, 0, 0])
        + override.to_bytes(4, "big")
        + ipaddress.IPv6Address(target).packed
        + option
    )


def run(*argv: str, stdin: str | None = None, timeout: float = 30) -> str:
    done = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO
    )
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr}")
    return done.stdout


def python_in(namespace: str, code: str, *args: str, stdin: str | None = None) -> str:
    return run("ip", "netns", "exec", namespace, sys.executable, "-c", code, *args, stdin=stdin)


def wait_until(what: str, check: Callable[[], bool], timeout: float = 5.0) -> float:
    """Seconds until `check` held; fails the test past `timeout`."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)
    return time.monotonic() - start


@dataclass
class Guest:
    namespace: str
    vm: VmSpec
    ipv4: str

    @property
    def nic(self) -> Nic:
        return self.vm.nics[0]

    @property
    def address(self) -> str:
        """The address the control plane gave eth0."""
        address = self.nic.address
        assert address is not None
        return address

    def addresses(self) -> list[str]:
        """eth0's IPv6 addresses, but for those still in duplicate address detection."""
        out = run("ip", "-n", self.namespace, "-j", "-6", "addr", "show", "dev", "eth0")
        return [
            entry["local"]
            for link in json.loads(out)
            for entry in link["addr_info"]
            if not entry.get("tentative")
        ]

    def fetch(self, requests: list[tuple[str, str]], timeout: float = 5.0) -> list[tuple[int, str]]:
        """(status, body) per (host, path); status 0 and the error if none came."""
        out = python_in(self.namespace, FETCH, json.dumps(requests), str(timeout))
        return [(status, body) for status, body in json.loads(out)]

    def send(self, source: str, payload: str) -> None:
        python_in(self.namespace, SEND, source, GATEWAY, str(SINK_PORT), payload)

    def send_icmpv6(self, message: bytes) -> None:
        python_in(self.namespace, SEND_ICMPV6, message.hex())


@dataclass
class Site:
    run_id: str
    host: str
    network: HostNetwork
    guests: list[Guest]
    state_dir: Path
    sink_log: Path
    servers: dict[str, subprocess.Popen[str]] = field(default_factory=dict)

    @property
    def namespaces(self) -> list[str]:
        return [self.host, *(guest.namespace for guest in self.guests)]

    def start_metadata(self) -> None:
        vms = [guest.vm.model_dump() for guest in self.guests]
        request = json.dumps({"bridge": self.network.bridge, "vms": vms})
        self.servers["metadata"] = _start(self.host, SERVE_METADATA, stdin=request + "\n")

    def start_sink(self) -> None:
        args = [self.network.bridge, str(SINK_PORT), str(self.sink_log)]
        self.servers["sink"] = _start(self.host, SINK, *args)

    def stop(self, server: str, *, abruptly: bool = False) -> None:
        process = self.servers.pop(server)
        if abruptly:
            process.kill()
        elif process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def guard(self, vms: list[VmSpec]) -> None:
        python_in(self.host, GUARD, stdin=json.dumps([vm.model_dump() for vm in vms]))

    @contextmanager
    def unguarded(self) -> Iterator[None]:
        """Without the guard, to show that what it stops would otherwise get through."""
        self.guard([])
        try:
            yield
        finally:
            self.guard([guest.vm for guest in self.guests])

    def received(self) -> list[str]:
        return self.sink_log.read_text().splitlines() if self.sink_log.exists() else []

    def neighbour(self, address: str) -> str | None:
        out = run("ip", "-n", self.host, "-j", "neigh", "show", "to", address)
        entries = [entry for entry in json.loads(out) if "lladdr" in entry]
        return str(entries[0]["lladdr"]) if entries else None


def _start(namespace: str, code: str, *args: str, stdin: str = "") -> subprocess.Popen[str]:
    """A Python server in `namespace`, once it says it is ready; it stops at the end of
    its standard input."""
    process = subprocess.Popen(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(stdin)
    process.stdin.flush()
    assert process.stdout.readline() == "ready\n"
    return process


def _vm(run_id: str, name: str) -> VmSpec:
    vm_id = f"vm-{run_id}{name}"
    mac = stable_mac(vm_id, 0)
    return VmSpec(
        id=vm_id,
        hostname=f"guest-{name}",
        cores=1,
        memory_bytes=2**28,
        disk_bytes=2**30,
        image=ImageRef(id="img-tiny", sha256="0" * 64, size_bytes=1, virtual_size_bytes=1),
        running=True,
        reboots=0,
        nics=[Nic(tap=f"nt{run_id}{name}", number=0, mac=mac, address=eui64_address(PREFIX, mac))],
        ssh_keys=[f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA{name * 8} {name}@nubis"],
    )


def _remove_namespaces(namespaces: list[str]) -> None:
    # Whatever still runs in our namespaces was started by this test (radvd, the
    # servers); a namespace is not gone while a process holds it.
    for namespace in namespaces:
        pids = subprocess.run(
            ["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False
        ).stdout.split()
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(int(pid), 9)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    run_id = uuid.uuid4().hex[:6]
    state_dir = tmp_path_factory.mktemp("agent-state")
    guests = [
        Guest(f"nbt-{run_id}-{name}", _vm(run_id, name), f"169.254.{index + 1}.1")
        for index, name in enumerate("ab")
    ]
    network = HostNetwork(bridge=f"nb{run_id}", prefix=PREFIX, gateway=GATEWAY)
    site = Site(run_id, f"nbt-{run_id}-h", network, guests, state_dir, state_dir / "sink.log")
    try:
        for namespace in site.namespaces:
            run("ip", "netns", "add", namespace)
            run("ip", "-n", namespace, "link", "set", "lo", "up")
        for guest in guests:
            run(
                "ip", "link", "add", guest.nic.tap, "netns", site.host, "type", "veth",
                "peer", "name", "eth0", "netns", guest.namespace,
            )  # fmt: skip
            run("ip", "-n", guest.namespace, "link", "set", "eth0", "address", guest.nic.mac)
        setup = {
            "network": network.model_dump(),
            "vms": [guest.vm.model_dump() for guest in guests],
            "state_dir": str(state_dir),
        }
        python_in(site.host, HOST_SETUP, stdin=json.dumps(setup))
        # As a VM boots once its network is there: its router solicitation is answered.
        for guest in guests:
            run("ip", "-n", guest.namespace, "link", "set", "eth0", "up")
        site.start_metadata()
        site.start_sink()
        yield site
    finally:
        for server in list(site.servers):
            site.stop(server)
        subprocess.run(
            ["ip", "netns", "exec", site.host, sys.executable, "-c",
             "import sys; from pathlib import Path; from nubis.agent.net.radvd import Radvd; "
             "Radvd(Path(sys.argv[1]), sys.argv[2]).stop()",
             str(state_dir), network.bridge],
            capture_output=True, check=False, cwd=REPO,
        )  # fmt: skip
        _remove_namespaces(site.namespaces)


def _configured(guest: Guest) -> float:
    return wait_until(
        f"{guest.namespace} has {guest.address}",
        lambda: guest.address in guest.addresses(),
        timeout=SLAAC_TIMEOUT,
    )


def test_each_vm_configures_its_stable_address_from_router_advertisements(site: Site) -> None:
    for guest in site.guests:
        _configured(guest)
        assert guest.address == eui64_address(PREFIX, guest.nic.mac)
        routes = run("ip", "-n", guest.namespace, "-6", "route", "show", "default")
        assert "dev eth0 proto ra" in routes


def test_each_vm_reads_its_own_metadata_as_told_by_its_port(site: Site) -> None:
    paths = [
        "/latest/meta-data/hostname",
        "/latest/meta-data/instance-id",
        "/latest/meta-data/public-keys/0/openssh-key",
    ]
    seen = []
    for guest in site.guests:
        run("ip", "-n", guest.namespace, "addr", "replace", f"{guest.ipv4}/16", "dev", "eth0")
        answers = guest.fetch(
            [("fe80::a9fe:a9fe%eth0", path) for path in paths]
            + [("169.254.169.254", path) for path in paths]
        )
        expected = (200, guest.vm.hostname), (200, guest.vm.id), (200, guest.vm.ssh_keys[0])
        assert answers == [*expected, *expected]
        seen.append(answers[0][1])
    assert len(set(seen)) == len(site.guests)


def test_the_metadata_service_answers_again_when_the_agent_comes_back(site: Site) -> None:
    guest = site.guests[0]
    request = [("fe80::a9fe:a9fe%eth0", "/latest/meta-data/instance-id")]
    assert guest.fetch(request) == [(200, guest.vm.id)]
    # The agent dies with the connection just served still in TIME_WAIT, and starts again.
    site.stop("metadata", abruptly=True)
    site.start_metadata()
    assert guest.fetch(request) == [(200, guest.vm.id)]


def test_a_request_from_no_vm_s_port_gets_no_vm_s_data(site: Site) -> None:
    out = python_in(
        site.host, FETCH, json.dumps([("fe80::a9fe:a9fe%" + site.network.bridge, "/")]), "5"
    )
    assert json.loads(out) == [[403, "no VM is known on this port\n"]]


def test_answers_for_a_vm_leave_only_through_its_port(site: Site) -> None:
    rogue, victim = site.guests
    # As if the rogue had made the host believe the victim's address is at its MAC.
    victim_link_local = link_local(victim.nic.mac)
    neighbour = ["ip", "-n", site.host, "neigh", "replace", victim_link_local]
    run(*neighbour, "lladdr", rogue.nic.mac, "dev", site.network.bridge, "nud", "permanent")
    request = [("fe80::a9fe:a9fe%eth0", "/latest/meta-data/public-keys/0/openssh-key")]

    def answers_seen_by_rogue() -> int:
        sniffer = _start(rogue.namespace, SNIFF, "3")
        try:
            assert victim.fetch(request, timeout=2)[0][0] == 0
            assert sniffer.stdout is not None
            return int(sniffer.stdout.readline())
        finally:
            sniffer.kill()
            sniffer.wait()

    try:
        assert answers_seen_by_rogue() == 0
        with site.unguarded():
            assert answers_seen_by_rogue() > 0
    finally:
        run("ip", "-n", site.host, "neigh", "del", victim_link_local, "dev", site.network.bridge)


def pin_gateway(site: Site, guest: Guest) -> None:
    """Make the guest know the gateway's MAC for good, so a datagram leaves at once: none
    waits in the guest for neighbour discovery, to leave later when it may pass.
    (A change of MAC forgets it.)"""
    bridge_mac = stable_mac(site.network.bridge, 0)
    run(
        "ip", "-n", guest.namespace, "neigh", "replace", GATEWAY, "lladdr", bridge_mac,
        "dev", "eth0", "nud", "permanent",
    )  # fmt: skip


def unpin_gateway(guest: Guest) -> None:
    subprocess.run(
        ["ip", "-n", guest.namespace, "neigh", "del", GATEWAY, "dev", "eth0"],
        capture_output=True,
        check=False,
    )


def test_a_vm_sending_from_another_address_gets_nothing_through(site: Site) -> None:
    guest = site.guests[0]
    _configured(guest)
    foreign = eui64_address(PREFIX, "02:de:ad:00:00:01")
    address = ["ip", "-n", guest.namespace, "addr"]
    run(*address, "add", f"{foreign}/128", "dev", "eth0", "nodad")
    try:
        pin_gateway(site, guest)
        guest.send(foreign, "from-a-foreign-address")
        # A datagram sent later on the same path arrives after the first would have.
        guest.send(guest.address, "from-its-own-address")
        wait_until("its own datagram", lambda: "from-its-own-address" in site.received())
        assert "from-a-foreign-address" not in site.received()

        with site.unguarded():
            guest.send(foreign, "unguarded-foreign-address")
            wait_until("the unguarded one", lambda: "unguarded-foreign-address" in site.received())
    finally:
        run(*address, "del", f"{foreign}/128", "dev", "eth0")
        unpin_gateway(guest)


def test_a_vm_sending_from_another_mac_gets_nothing_through(site: Site) -> None:
    guest = site.guests[0]
    _configured(guest)
    link = ["ip", "-n", guest.namespace, "link", "set", "eth0", "address"]
    try:
        run(*link, "02:de:ad:00:00:02")
        pin_gateway(site, guest)
        guest.send(guest.address, "from-a-foreign-mac")
        run(*link, guest.nic.mac)
        pin_gateway(site, guest)
        guest.send(guest.address, "from-its-own-mac")
        wait_until("its own datagram", lambda: "from-its-own-mac" in site.received())
        assert "from-a-foreign-mac" not in site.received()

        run(*link, "02:de:ad:00:00:02")
        pin_gateway(site, guest)
        with site.unguarded():
            guest.send(guest.address, "unguarded-foreign-mac")
            wait_until("the unguarded one", lambda: "unguarded-foreign-mac" in site.received())
    finally:
        run(*link, guest.nic.mac)
        unpin_gateway(guest)


def _in_prefix(guest: Guest, prefix: str) -> list[str]:
    network = ipaddress.IPv6Network(prefix)
    return [address for address in guest.addresses() if ipaddress.IPv6Address(address) in network]


def test_a_router_advertisement_from_a_vm_reaches_no_other_vm(site: Site) -> None:
    rogue, victim = site.guests
    prefix = "fd00:bad:bad:1::/64"
    rogue.send_icmpv6(frames.router_advertisement(prefix))
    # It would be taken as soon as it arrived; give it a second to arrive.
    time.sleep(1.0)
    assert _in_prefix(victim, prefix) == []
    routes = run("ip", "-n", victim.namespace, "-6", "route", "show", "default")
    assert link_local(rogue.nic.mac) not in routes

    try:
        with site.unguarded():
            rogue.send_icmpv6(frames.router_advertisement(prefix))
            wait_until("the unguarded prefix", lambda: bool(_in_prefix(victim, prefix)))
    finally:
        for address in _in_prefix(victim, prefix):
            run("ip", "-n", victim.namespace, "addr", "del", f"{address}/64", "dev", "eth0")
        for route in (prefix, f"default via {link_local(rogue.nic.mac)}"):
            subprocess.run(
                ["ip", "-n", victim.namespace, "-6", "route", "del", *route.split(), "dev", "eth0"],
                capture_output=True,
                check=False,
            )


def test_a_vm_cannot_claim_another_vm_s_address_toward_the_host(site: Site) -> None:
    rogue, victim = site.guests
    _configured(victim)
    # The host learns the victim's MAC from the victim's own (solicited) advertisement.
    python_in(site.host, SEND, GATEWAY, victim.address, "9", "hello")
    wait_until("the host knows the victim", lambda: site.neighbour(victim.address) is not None)
    assert site.neighbour(victim.address) == victim.nic.mac

    claim = neighbour_advertisement(victim.address, rogue.nic.mac)
    rogue.send_icmpv6(claim)
    time.sleep(1.0)
    assert site.neighbour(victim.address) == victim.nic.mac

    try:
        with site.unguarded():
            rogue.send_icmpv6(claim)
            wait_until(
                "the unguarded claim",
                lambda: site.neighbour(victim.address) == rogue.nic.mac,
            )
    finally:
        run("ip", "-n", site.host, "neigh", "flush", "to", victim.address)


LINKS = """
import json, subprocess, sys
from nubis.agent.net import links
from nubis.protocol import HostNetwork
network = HostNetwork.model_validate_json(sys.argv[1])
tap = sys.argv[2]
links.ensure_bridge(network)
subprocess.run(["ip", "addr", "add", "fd00:dead::1/64", "dev", network.bridge], check=True)
links.ensure_bridge(network)
links.ensure_tap(tap, network.bridge)
links.ensure_tap(tap, network.bridge)
addresses = subprocess.run(
    ["ip", "-j", "addr", "show", "dev", network.bridge], capture_output=True, check=True
).stdout
master = subprocess.run(["ip", "-j", "link", "show", tap], capture_output=True, check=True).stdout
seen = {
    "addresses": sorted(
        f"{entry['local']}/{entry['prefixlen']}"
        for entry in json.loads(addresses)[0]["addr_info"]
        if not entry["local"].startswith("fe80::") or entry["local"] == "fe80::a9fe:a9fe"
    ),
    "master": json.loads(master)[0].get("master"),
    "bridges": links.bridges(),
    "taps": links.taps(),
    "deleted": [links.delete_link(tap), links.delete_link(tap)],
    "taps_after": links.taps(),
}
print(json.dumps(seen))
"""


# --- frames a VM forges, sent as they are ---------------------------------------------


def _arrived(
    site: Site, sent: list[bytes], markers: list[str], *, at: tuple[str, str] | None = None
) -> dict[str, int]:
    """How many frames carrying each marker reached `at` (a namespace and link; the
    second guest's eth0 by default) when the first guest sent `sent` (each thrice)."""
    namespace, link = at or (site.guests[1].namespace, "eth0")
    with capture(namespace, link) as seen:
        frames.send(site.guests[0].namespace, "eth0", sent)
        time.sleep(0.5)
    return {
        marker: sum(marker.encode() in frame.raw for frame in seen.received) for marker in markers
    }


def test_dhcpv6_answers_reach_no_vm_whatever_port_they_come_from(site: Site) -> None:
    rogue, victim = site.guests
    source, destination = link_local(rogue.nic.mac), link_local(victim.nic.mac)

    def datagram(source_port: int, port: int, marker: str) -> bytes:
        body = frames.udp(source_port, port, marker.encode())
        return frames.ipv6_frame(
            rogue.nic.mac, victim.nic.mac, source, destination, proto=frames.UDP, body=body
        )

    sent = [datagram(547, 546, "from-547"), datagram(40000, 546, "from-40000"),
            datagram(40000, 545, "control")]  # fmt: skip
    seen = _arrived(site, sent, ["from-547", "from-40000", "control"])
    assert seen == {"from-547": 0, "from-40000": 0, "control": 3}


def test_a_vm_cannot_fail_a_neighbour_s_duplicate_address_detection(site: Site) -> None:
    rogue, victim = site.guests
    group, group_mac = frames.solicited_node(victim.address)

    def solicitation(source: str, marker: str) -> bytes:
        message = frames.neighbour_solicitation(victim.address, marker.encode())
        return frames.ipv6_frame(
            rogue.nic.mac, group_mac, source, group, proto=frames.ICMPV6, body=message
        )

    sent = [solicitation("::", "dad-probe"), solicitation(link_local(rogue.nic.mac), "lookup")]
    # Only a solicitation from `::` fails the neighbour's detection; asking for its MAC
    # from one's own address is what neighbours do.
    assert _arrived(site, sent, ["dad-probe", "lookup"]) == {"dad-probe": 0, "lookup": 3}


def test_icmpv6_in_fragments_reaches_no_vm(site: Site) -> None:
    rogue, victim = site.guests
    source = link_local(rogue.nic.mac)
    split = frames.fragmented_icmpv6(
        rogue.nic.mac,
        frames.ALL_NODES_MAC,
        source,
        frames.ALL_NODES,
        message=frames.router_advertisement("fd00:bad:bad:2::/64"),
        marker=b"first-fragment",
    )
    control = frames.ipv6_frame(
        rogue.nic.mac,
        victim.nic.mac,
        source,
        link_local(victim.nic.mac),
        proto=frames.UDP,
        body=frames.udp(40000, 9, b"control"),
    )
    seen = _arrived(site, [*split, control], ["first-fragment", "control"])
    assert seen == {"first-fragment": 0, "control": 3}


def test_only_ipv6_arp_and_ipv4_leave_a_vm_and_never_with_a_vlan_tag(site: Site) -> None:
    rogue, victim = site.guests
    inner = frames.ipv6(
        link_local(rogue.nic.mac), link_local(victim.nic.mac), frames.UDP,
        frames.udp(40000, 9, b"tagged"),
    )  # fmt: skip
    sent = [
        frames.ethernet(rogue.nic.mac, victim.nic.mac, frames.ETHER_VLAN,
                        frames.vlan(7, frames.ETHER_IPV6, inner)),
        frames.ethernet(rogue.nic.mac, victim.nic.mac, 0x88B5, b"local-ether-type"),
    ]  # fmt: skip
    assert _arrived(site, sent, ["tagged", "local-ether-type"]) == {
        "tagged": 0,
        "local-ether-type": 0,
    }


def test_ipv4_leaves_a_vm_only_from_a_link_local_address_to_the_metadata_service(
    site: Site,
) -> None:
    rogue, victim = site.guests
    bridge_mac = stable_mac(site.network.bridge, 0)
    sent = [
        frames.ipv4_udp(rogue.nic.mac, victim.nic.mac, rogue.ipv4, victim.ipv4,
                        destination_port=9, payload=b"to-a-neighbour"),
        frames.ipv4_udp(rogue.nic.mac, bridge_mac, "10.1.2.3", METADATA_IPV4,
                        destination_port=9, payload=b"from-no-link-local"),
        frames.ipv4_udp(rogue.nic.mac, bridge_mac, METADATA_IPV4, METADATA_IPV4,
                        destination_port=9, payload=b"as-the-service"),
        frames.ipv4_udp(rogue.nic.mac, bridge_mac, rogue.ipv4, METADATA_IPV4,
                        destination_port=9, payload=b"to-the-service"),
    ]  # fmt: skip
    markers = ["to-a-neighbour", "from-no-link-local", "as-the-service", "to-the-service"]
    assert _arrived(site, sent, markers[:1]) == {"to-a-neighbour": 0}
    assert _arrived(site, sent, markers[1:], at=(site.host, site.network.bridge)) == {
        "from-no-link-local": 0,
        "as-the-service": 0,
        "to-the-service": 3,
    }


def test_arp_leaves_a_vm_only_with_its_own_mac_and_a_link_local_address(site: Site) -> None:
    rogue, victim = site.guests

    def reply(sender_mac: str, sender_ip: str) -> bytes:
        return frames.arp_reply(rogue.nic.mac, sender_mac, sender_ip, victim.nic.mac, victim.ipv4)

    sent = [
        reply(rogue.nic.mac, METADATA_IPV4),  # the service's address
        reply(victim.nic.mac, rogue.ipv4),  # another MAC than the frame's
        reply(rogue.nic.mac, "10.1.2.3"),  # not a link-local address
        reply(rogue.nic.mac, rogue.ipv4),
    ]
    with capture(victim.namespace, "eth0") as seen:
        frames.send(rogue.namespace, "eth0", sent)
        time.sleep(0.5)
    arrived = [frame.raw[14:] for frame in seen.received if frame.ether_type == frames.ETHER_ARP]
    assert arrived == [sent[3][14:]] * 3


def test_a_tap_the_guard_does_not_know_sends_nothing(site: Site) -> None:
    victim = site.guests[1]
    stranger = f"nbt-{site.run_id}-x"
    tap = f"nt{site.run_id}x"
    mac = "02:6e:62:00:00:78"
    run("ip", "netns", "add", stranger)
    try:
        run("ip", "link", "add", tap, "netns", site.host, "type", "veth",
            "peer", "name", "eth0", "netns", stranger)  # fmt: skip
        run("ip", "-n", stranger, "link", "set", "eth0", "address", mac, "up")
        run("ip", "-n", site.host, "link", "set", tap, "master", site.network.bridge, "up")
        frame = frames.ipv6_frame(
            mac,
            victim.nic.mac,
            link_local(mac),
            link_local(victim.nic.mac),
            proto=frames.UDP,
            body=frames.udp(40000, 9, b"unknown-tap"),
        )
        with capture(victim.namespace, "eth0") as seen:
            frames.send(stranger, "eth0", [frame])
            time.sleep(0.5)
        assert [f for f in seen.received if b"unknown-tap" in f.raw] == []
    finally:
        _remove_namespaces([stranger])


def test_the_bridge_and_taps_converge_and_are_listed(site: Site) -> None:
    network = HostNetwork(
        bridge=f"nb{site.run_id}x", prefix="fd00:6e75:6273:2::/64", gateway="fd00:6e75:6273:2::1"
    )
    tap = f"nt{site.run_id}x"
    try:
        seen = json.loads(python_in(site.host, LINKS, network.model_dump_json(), tap))
    finally:
        run("ip", "-n", site.host, "link", "del", network.bridge)
    assert seen["addresses"] == sorted(
        ["fd00:6e75:6273:2::1/64", "169.254.169.254/32", "fe80::a9fe:a9fe/64"]
    )
    assert seen["master"] == network.bridge
    assert seen["bridges"] == sorted([site.network.bridge, network.bridge])
    assert seen["taps"] == sorted([*(guest.nic.tap for guest in site.guests), tap])
    assert seen["deleted"] == [True, False]
    assert tap not in seen["taps_after"]


RADVD = """
import json, sys
from pathlib import Path
from nubis.agent.net.radvd import Radvd
from nubis.protocol import HostNetwork
network = HostNetwork.model_validate_json(sys.argv[1])
state_dir = Path(sys.argv[2])
radvd = Radvd(state_dir, network.bridge)
steps = {"started": radvd.ensure(network), "pid": radvd.pid()}
# As after an agent restart: a new object finds the running radvd by its pidfile.
again = Radvd(state_dir, network.bridge)
steps["found"] = again.pid()
steps["restarted_unchanged"] = again.ensure(network)
moved = network.model_copy(update={"prefix": "fd00:6e75:6273:4::/64"})
steps["restarted_changed"] = again.ensure(moved)
steps["new_pid"] = again.pid()
steps["config"] = again.config_path.read_text()
steps["stopped"] = again.stop()
steps["after_stop"] = again.pid()
steps["files_left"] = sorted(path.name for path in state_dir.glob("radvd-*.conf"))
print(json.dumps(steps))
"""


def test_radvd_is_found_again_and_restarted_only_for_a_new_config(site: Site) -> None:
    network = HostNetwork(
        bridge=f"nb{site.run_id}r", prefix="fd00:6e75:6273:3::/64", gateway="fd00:6e75:6273:3::1"
    )
    run("ip", "-n", site.host, "link", "add", network.bridge, "type", "bridge")
    try:
        steps = json.loads(
            python_in(site.host, RADVD, network.model_dump_json(), str(site.state_dir))
        )
    finally:
        run("ip", "-n", site.host, "link", "del", network.bridge)
    assert steps["started"] is True
    assert steps["found"] == steps["pid"] is not None
    assert steps["restarted_unchanged"] is False
    assert steps["restarted_changed"] is True
    assert steps["new_pid"] not in (None, steps["pid"])
    assert "prefix fd00:6e75:6273:4::/64" in steps["config"]
    assert steps["stopped"] is True
    assert steps["after_stop"] is None
    assert steps["files_left"] == [f"radvd-{site.network.bridge}.conf"]

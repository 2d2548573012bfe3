"""Frames captured on a link in a namespace, as a test would read `tcpdump` on a host.

A small Python sniffer (AF_PACKET) runs inside the namespace for as long as the `with`
block lasts; it writes each frame as a line of hex. On a VM's tap, the frames the host
*sends* (PACKET_OUTGOING) are those that reach the VM: what a capture on the VM's side
would see.

    with capture(host.namespace, tap) as seen:
        ...  # make traffic
    assert not [frame for frame in seen.frames if frame.source_mac == forged]
"""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.e2e.processes import STOP_SECONDS

SNIFFER = r"""
import signal, socket, sys
link = sys.argv[1]
sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
sniffer.bind((link, 0))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("ready", flush=True)
while True:
    frame, address = sniffer.recvfrom(65535)
    print(address[2], frame.hex(), flush=True)
"""
READY_SECONDS = 10.0
OUTGOING = 4
"""PACKET_OUTGOING: a frame the namespace's side sends on the link."""
_IPV6 = 0x86DD
_ICMPV6 = 58
_UDP = 17


@dataclass(frozen=True)
class Frame:
    """One Ethernet frame and the few things tests ask of it."""

    kind: int
    """The packet type AF_PACKET gave it: OUTGOING for a frame sent on the link."""
    raw: bytes

    @property
    def source_mac(self) -> str:
        return ":".join(f"{octet:02x}" for octet in self.raw[6:12])

    @property
    def ether_type(self) -> int:
        return int.from_bytes(self.raw[12:14], "big")

    @property
    def _ipv6(self) -> bool:
        return self.ether_type == _IPV6 and len(self.raw) >= 54

    @property
    def source(self) -> str | None:
        """The IPv6 source address, if it is an IPv6 frame."""
        return str(ipaddress.IPv6Address(self.raw[22:38])) if self._ipv6 else None

    @property
    def destination(self) -> str | None:
        return str(ipaddress.IPv6Address(self.raw[38:54])) if self._ipv6 else None

    @property
    def icmpv6_type(self) -> int | None:
        """The ICMPv6 type of an IPv6 frame whose next header is ICMPv6."""
        if self._ipv6 and self.raw[20] == _ICMPV6 and len(self.raw) > 54:
            return self.raw[54]
        return None

    @property
    def udp_source_port(self) -> int | None:
        if self._ipv6 and self.raw[20] == _UDP and len(self.raw) >= 56:
            return int.from_bytes(self.raw[54:56], "big")
        return None


@dataclass
class Capture:
    frames: list[Frame] = field(default_factory=list)

    @property
    def sent(self) -> list[Frame]:
        """The frames sent on the link (on a tap: those that reached the VM)."""
        return [frame for frame in self.frames if frame.kind == OUTGOING]

    @property
    def received(self) -> list[Frame]:
        """The frames that came in on the link (on a tap: what the VM sent, before any
        filter of the host saw them)."""
        return [frame for frame in self.frames if frame.kind != OUTGOING]


@contextlib.contextmanager
def capture(namespace: str, link: str) -> Iterator[Capture]:
    """Capture every frame on `link` in `namespace` while the block runs; the frames are
    in the Capture once the block is left."""
    argv = ["ip", "netns", "exec", namespace, sys.executable, "-c", SNIFFER, link]
    sniffer = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    result = Capture()
    try:
        assert sniffer.stdout is not None
        first = sniffer.stdout.readline()
        if first.strip() != "ready":
            sniffer.kill()
            _, errors = sniffer.communicate(timeout=READY_SECONDS)
            raise RuntimeError(f"the capture on {link} in {namespace} did not start: {errors}")
        yield result
    finally:
        sniffer.terminate()
        try:
            output, _ = sniffer.communicate(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            sniffer.kill()
            output, _ = sniffer.communicate()
    for line in output.splitlines():
        kind, _, data = line.partition(" ")
        if kind.isdigit() and data:
            result.frames.append(Frame(int(kind), bytes.fromhex(data)))

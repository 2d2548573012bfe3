"""Frames made byte by byte, for a test guest to send what no honest stack would: forged
addresses, router advertisements, fragments, VXLAN aimed at a host.

`send(namespace, link, frames)` puts them on a link as they are (AF_PACKET); a capture
(`tests/e2e/capture.py`) on the other side tells which arrived.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys

ETHER_IPV6 = 0x86DD
ETHER_IPV4 = 0x0800
ETHER_ARP = 0x0806
ETHER_VLAN = 0x8100
UDP = 17
ICMPV6 = 58
FRAGMENT = 44
DESTINATION_OPTIONS = 60
ALL_NODES = "ff02::1"
ALL_NODES_MAC = "33:33:00:00:00:01"
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"

_SEND = """
import socket, sys
frames = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
frames.bind((sys.argv[1], 0))
for _ in range(3):
    for frame in sys.argv[2:]:
        frames.send(bytes.fromhex(frame))
"""


def send(namespace: str, link: str, frames: list[bytes]) -> None:
    """Send each frame three times on `link` in `namespace`."""
    argv = ["ip", "netns", "exec", namespace, sys.executable, "-c", _SEND, link]
    subprocess.run([*argv, *(frame.hex() for frame in frames)], check=True, timeout=30)


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _mac(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def ethernet(source_mac: str, destination_mac: str, ether_type: int, payload: bytes) -> bytes:
    return _mac(destination_mac) + _mac(source_mac) + ether_type.to_bytes(2, "big") + payload


def vlan(tag: int, ether_type: int, payload: bytes) -> bytes:
    """An 802.1Q header and what it carries (to follow `ethernet(…, ETHER_VLAN, …)`)."""
    return tag.to_bytes(2, "big") + ether_type.to_bytes(2, "big") + payload


def _with_checksum(source: str, destination: str, proto: int, body: bytes) -> bytes:
    """An upper-layer message of IPv6 with its checksum filled in."""
    at = {UDP: 6, ICMPV6: 2}[proto]
    src, dst = ipaddress.IPv6Address(source).packed, ipaddress.IPv6Address(destination).packed
    pseudo = src + dst + len(body).to_bytes(4, "big") + bytes([0, 0, 0, proto])
    body = body[:at] + bytes(2) + body[at + 2 :]
    return body[:at] + checksum(pseudo + body).to_bytes(2, "big") + body[at + 2 :]


def ipv6(source: str, destination: str, next_header: int, payload: bytes) -> bytes:
    """An IPv6 packet, hop limit 255 (as neighbour discovery wants)."""
    header = bytes([0x60, 0, 0, 0]) + len(payload).to_bytes(2, "big") + bytes([next_header, 255])
    src, dst = ipaddress.IPv6Address(source).packed, ipaddress.IPv6Address(destination).packed
    return header + src + dst + payload


def udp(source_port: int, destination_port: int, payload: bytes) -> bytes:
    """A UDP datagram without its checksum (see `ipv6_frame`)."""
    length = (8 + len(payload)).to_bytes(2, "big")
    return (
        source_port.to_bytes(2, "big")
        + destination_port.to_bytes(2, "big")
        + length
        + bytes(2)
        + payload
    )


def ipv6_frame(
    source_mac: str, destination_mac: str, source: str, destination: str, *, proto: int, body: bytes
) -> bytes:
    """An Ethernet frame holding an IPv6 packet; UDP and ICMPv6 get their checksum."""
    if proto in (UDP, ICMPV6):
        body = _with_checksum(source, destination, proto, body)
    return ethernet(source_mac, destination_mac, ETHER_IPV6, ipv6(source, destination, proto, body))


def neighbour_solicitation(target: str, marker: bytes) -> bytes:
    """An NS for `target`, with `marker` in a nonce option (RFC 3971's option 14, which
    duplicate address detection carries)."""
    padded = marker + bytes(-(len(marker) + 2) % 8)
    option = bytes([14, (len(padded) + 2) // 8]) + padded
    return bytes([135, 0, 0, 0]) + bytes(4) + ipaddress.IPv6Address(target).packed + option


def solicited_node(address: str) -> tuple[str, str]:
    """The solicited-node multicast group of `address`, and its MAC."""
    low = ipaddress.IPv6Address(address).packed[-3:]
    group = ipaddress.IPv6Address(bytes.fromhex("ff0200000000000000000001ff") + low)
    return str(group), "33:33:ff:" + ":".join(f"{octet:02x}" for octet in low)


def router_advertisement(prefix: str, marker: bytes = b"") -> bytes:
    """An RA making the sender a default router and offering `prefix` for SLAAC (and
    carrying `marker` in an option no host knows, which hosts skip)."""
    network = ipaddress.IPv6Network(prefix)
    header = bytes([134, 0, 0, 0, 64, 0]) + (1800).to_bytes(2, "big") + bytes(8)
    prefix_option = (
        bytes([3, 4, 64, 0b1100_0000])
        + (86400).to_bytes(4, "big")
        + (14400).to_bytes(4, "big")
        + bytes(4)
        + network.network_address.packed
    )
    extra = b""
    if marker:
        padded = marker + bytes(-(len(marker) + 2) % 8)
        extra = bytes([253, (len(padded) + 2) // 8]) + padded
    return header + prefix_option + extra


def fragmented_icmpv6(
    source_mac: str,
    destination_mac: str,
    source: str,
    destination: str,
    *,
    message: bytes,
    marker: bytes,
) -> list[bytes]:
    """An ICMPv6 `message` behind a destination options header so long that the first
    fragment ends before the ICMPv6 header (RFC 7113's evasion of RA guards): two
    frames. `marker` is in the options, so in the first fragment."""
    message = _with_checksum(source, destination, ICMPV6, message)
    # An option of a type the receiver skips (00 in the top bits), then padding: 256 bytes.
    option = bytes([0x1E, len(marker)]) + marker
    padding = 256 - 2 - len(option)
    options = bytes([ICMPV6, 31]) + option + bytes([1, padding - 2]) + bytes(padding - 2)
    fragmentable = options + message
    first, rest = fragmentable[:128], fragmentable[128:]
    ident = (0x6E756273).to_bytes(4, "big")

    def fragment(offset: int, more: bool, data: bytes) -> bytes:
        field = (offset // 8) << 3 | int(more)
        header = bytes([DESTINATION_OPTIONS, 0]) + field.to_bytes(2, "big") + ident
        packet = ipv6(source, destination, FRAGMENT, header + data)
        return ethernet(source_mac, destination_mac, ETHER_IPV6, packet)

    return [fragment(0, True, first), fragment(128, False, rest)]


def vxlan(vni: int, inner: bytes) -> bytes:
    """A VXLAN header (RFC 7348: the I flag, the VNI) and the frame it carries."""
    return bytes([0x08, 0, 0, 0]) + vni.to_bytes(3, "big") + bytes(1) + inner


def ipv4_udp(
    source_mac: str,
    destination_mac: str,
    source: str,
    destination: str,
    *,
    destination_port: int,
    payload: bytes,
) -> bytes:
    """An Ethernet frame with an IPv4 UDP datagram (no UDP checksum, which IPv4 allows)."""
    datagram = udp(40000, destination_port, payload)
    total = (20 + len(datagram)).to_bytes(2, "big")
    header = bytes([0x45, 0]) + total + bytes(4) + bytes([64, UDP]) + bytes(2)
    header += ipaddress.IPv4Address(source).packed + ipaddress.IPv4Address(destination).packed
    header = header[:10] + checksum(header).to_bytes(2, "big") + header[12:]
    return ethernet(source_mac, destination_mac, ETHER_IPV4, header + datagram)


def arp_reply(
    frame_mac: str, sender_mac: str, sender_ip: str, target_mac: str, target_ip: str
) -> bytes:
    """An ARP reply in a frame from `frame_mac` (which may differ from the sender's MAC
    the reply claims)."""
    body = (
        bytes([0, 1, 8, 0, 6, 4, 0, 2])
        + _mac(sender_mac)
        + ipaddress.IPv4Address(sender_ip).packed
        + _mac(target_mac)
        + ipaddress.IPv4Address(target_ip).packed
    )
    return ethernet(frame_mac, BROADCAST_MAC, ETHER_ARP, body)

"""The addresses of a VM's link: its NICs' MACs, their SLAAC addresses, the metadata
service, and the packet mark of its ports.

Pure and free of dependencies on purpose, and shared by both sides like `protocol.py`:
the control plane computes the same values when it hands a NIC out, every host
computes them again on its own, and all must get exactly what the guest configures.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re

METADATA_IPV4 = "169.254.169.254"
"""Where EC2-style clients look for the metadata service."""
METADATA_IPV6 = "fe80::a9fe:a9fe"
"""The same service on IPv6: link-local, so it is on every VM's link at once."""

_MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")


def _mac_bytes(mac: str) -> bytes:
    normal = mac.lower()
    if not _MAC.match(normal):
        raise ValueError(f"not a MAC address: {mac!r}")
    return bytes.fromhex(normal.replace(":", ""))


def stable_mac(owner_id: str, index: int) -> str:
    """The MAC of `owner_id`'s `index`-th NIC: the same on every call, host and restart.

    Locally administered (bit 1 of the first octet set) and unicast (bit 0 clear), so it
    can never be a vendor's address nor a multicast group; the other 46 bits come from a
    hash, which makes a clash within one network (a few hundred NICs) vanishingly rare.
    """
    if index < 0:
        raise ValueError(f"a NIC index is not negative: {index}")
    digest = hashlib.blake2b(f"{owner_id}/{index}".encode(), digest_size=6).digest()
    first = (digest[0] & 0b1111_1100) | 0b0000_0010
    return ":".join(f"{octet:02x}" for octet in bytes([first]) + digest[1:])


def eui64_address(prefix: str, mac: str) -> str:
    """The address a guest gives itself by SLAAC in `prefix` (a /64) for the NIC `mac`.

    The interface identifier is the modified EUI-64 of the MAC (RFC 4291, appendix A):
    `ff:fe` in the middle and the universal/local bit inverted.
    """
    network = ipaddress.IPv6Network(prefix, strict=True)
    if network.prefixlen != 64:
        raise ValueError(f"SLAAC needs a /64, not {prefix}")
    raw = _mac_bytes(mac)
    interface_id = bytes([raw[0] ^ 0b0000_0010]) + raw[1:3] + b"\xff\xfe" + raw[3:]
    address = int(network.network_address) | int.from_bytes(interface_id, "big")
    return str(ipaddress.IPv6Address(address))


def link_local(mac: str) -> str:
    """The link-local address a guest gives the NIC `mac` (fe80::/64 and its EUI-64)."""
    return eui64_address("fe80::/64", mac)


def mark_of(vm_id: str) -> int:
    """The packet mark of `vm_id`'s ports: non-zero, 32 bits, the same on every host and
    after every restart, so nothing needs to remember it."""
    mark = int.from_bytes(hashlib.blake2b(vm_id.encode(), digest_size=4).digest(), "big")
    return mark or 1

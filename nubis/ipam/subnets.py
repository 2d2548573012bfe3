"""The /64s of a location's prefix, numbered from 1 (the zeroth is left unused, so a
subnet's address never reads like the prefix itself)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from nubis.errors import Conflict


def count(prefix: str) -> int:
    """How many /64s `prefix` holds, the unused zeroth included."""
    network = ipaddress.IPv6Network(prefix)
    return 1 << (64 - network.prefixlen)


def subnet(prefix: str, number: int) -> str:
    """The `number`-th /64 of `prefix`, e.g. subnet("fd00:1::/48", 2) == "fd00:1:0:2::/64"."""
    network = ipaddress.IPv6Network(prefix)
    if not 0 < number < count(prefix):
        raise ValueError(f"{prefix} has no /64 number {number}")
    start = int(network.network_address) + (number << 64)
    return str(ipaddress.IPv6Network((start, 64)))


def gateway(subnet_prefix: str) -> str:
    """The host's own address in a /64: its `::1`."""
    return str(ipaddress.IPv6Network(subnet_prefix).network_address + 1)


def first_free(prefix: str, taken: Iterable[int]) -> int:
    """The lowest /64 number of `prefix` not in `taken`; Conflict if it is full."""
    used = set(taken)
    for number in range(1, count(prefix)):
        if number not in used:
            return number
    raise Conflict(f"the location's prefix {prefix} has no free /64 left")

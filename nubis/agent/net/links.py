"""The host's links for its VM network: the bridge, the taps, and the sysctls they need.

Everything acts in the network namespace the process runs in. The agent owns every
interface whose name starts with `nb` (bridges) or `nt` (taps): `bridges()` and `taps()`
list them so that the reconciler can remove those the desired state no longer names.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pyroute2 import IPRoute  # type: ignore[import-untyped]
from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from nubis.agent.net.addresses import METADATA_IPV4, METADATA_IPV6, stable_mac
from nubis.protocol import HostNetwork

BRIDGE_PREFIX = "nb"
TAP_PREFIX = "nt"

_IFA_F_NODAD = 0x02
_ENODEV = 19
_SYSCTL = Path("/proc/sys")


def write_sysctl(name: str, value: str) -> None:
    """Set a sysctl (`net.ipv6.conf.all.forwarding`) of this process's namespace.

    /proc/sys/net is the namespace of whoever opens it, so this is per namespace.
    """
    (_SYSCTL / name.replace(".", "/")).write_text(value + "\n")


def bridge_addresses(network: HostNetwork) -> set[tuple[str, int]]:
    """The addresses the host has on a network's bridge: its gateway in the /64, and
    the metadata service's two."""
    prefix = ipaddress.IPv6Network(network.prefix, strict=True)
    gateway = ipaddress.IPv6Address(network.gateway)
    if gateway not in prefix:
        raise ValueError(f"gateway {gateway} is not in {prefix}")
    return {(str(gateway), prefix.prefixlen), (METADATA_IPV4, 32), (METADATA_IPV6, 64)}


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def ensure_bridge(network: HostNetwork) -> None:
    """Make the network's bridge exist, be up and carry exactly the host's addresses.

    The bridge gets a MAC of its own (from its name), for otherwise it takes the lowest
    of its ports' and changes whenever a tap comes or goes, and guests would keep
    talking to a router MAC that is gone. The host routes the /64 (forwarding on) but
    never takes a router advertisement from the bridge, and accepted connections keep
    the packet mark that names a VM's port (for the metadata service).
    """
    wanted = bridge_addresses(network)
    write_sysctl("net.ipv6.conf.all.forwarding", "1")
    write_sysctl("net.ipv4.tcp_fwmark_accept", "1")
    with IPRoute() as ipr:
        index = _index(ipr, network.bridge)
        if index is None:
            ipr.link(
                "add",
                ifname=network.bridge,
                kind="bridge",
                address=stable_mac(network.bridge, 0),
            )
            index = _index(ipr, network.bridge)
            assert index is not None
        write_sysctl(f"net.ipv6.conf.{network.bridge}.accept_ra", "0")
        ipr.link("set", index=index, state="up")
        present = set()
        for entry in ipr.get_addr(index=index):
            address = (entry.get("IFA_ADDRESS"), entry["prefixlen"])
            present.add(address)
            # The kernel's own link-local address stays: radvd may speak from it.
            kernel_link_local = address[0].startswith("fe80:") and address not in wanted
            if address not in wanted and not kernel_link_local:
                ipr.addr("del", index=index, address=address[0], prefixlen=address[1])
        for missing, length in sorted(wanted - present):
            # No duplicate address detection: the addresses are the host's by design,
            # and a tentative address could not be bound by the metadata service.
            ipr.addr("add", index=index, address=missing, prefixlen=length, flags=_IFA_F_NODAD)


def ensure_tap(name: str, bridge: str) -> None:
    """Make the tap `name` exist, be up and be a port of `bridge`.

    A tap made here is persistent and owned by root; QEMU opens it by name. A link of
    another kind by that name (a test's veth) is taken as it is.
    """
    if not name.startswith(TAP_PREFIX):
        raise ValueError(f"a tap's name starts with {TAP_PREFIX!r}: {name!r}")
    with IPRoute() as ipr:
        master = _index(ipr, bridge)
        if master is None:
            raise LookupError(f"no bridge {bridge}")
        index = _index(ipr, name)
        if index is None:
            ipr.link("add", ifname=name, kind="tuntap", mode="tap")
            index = _index(ipr, name)
            assert index is not None
        # A port passes the VM's frames on; the host itself has nothing to say on it
        # (no link-local address, no router solicitations toward the guest).
        write_sysctl(f"net.ipv6.conf.{name}.disable_ipv6", "1")
        ipr.link("set", index=index, master=master, state="up")


def delete_link(name: str) -> bool:
    """Remove a tap or bridge; False if it was not there."""
    with IPRoute() as ipr:
        index = _index(ipr, name)
        if index is None:
            return False
        try:
            ipr.link("del", index=index)
        except NetlinkError as error:
            if error.code == _ENODEV:
                return False
            raise
        return True


def _names(prefix: str) -> list[str]:
    with IPRoute() as ipr:
        names = [str(link.get("IFLA_IFNAME")) for link in ipr.get_links()]
    return sorted(name for name in names if name.startswith(prefix))


def bridges() -> list[str]:
    """The agent's bridges present here (`nb…`)."""
    return _names(BRIDGE_PREFIX)


def taps() -> list[str]:
    """The agent's taps present here (`nt…`)."""
    return _names(TAP_PREFIX)

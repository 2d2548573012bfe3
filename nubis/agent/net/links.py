"""The host's links for its VMs: bridges, VXLAN devices, taps, and the sysctls they need.

Everything acts in the network namespace the process runs in. The agent owns every
interface whose name starts with `nb` (bridges), `nx` (VXLAN devices) or `nt` (taps):
`bridges()`, `vxlans()` and `taps()` list them so that the reconciler can remove those
the desired state no longer names.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute  # type: ignore[import-untyped]
from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]
from pyroute2.netlink.rtnl import ndmsg  # type: ignore[import-untyped]

from nubis.addresses import METADATA_IPV4, METADATA_IPV6, stable_mac
from nubis.protocol import VXLAN_PORT, HostNetwork, Network

BRIDGE_PREFIX = "nb"
VXLAN_PREFIX = "nx"
TAP_PREFIX = "nt"
ALL_ZEROS = "00:00:00:00:00:00"
"""The FDB address of a VXLAN device's flooding entries: where frames go that no other
entry names (broadcast, multicast, unknown unicast)."""

_IFA_F_NODAD = 0x02
_STATIC = ndmsg.states["permanent"] | ndmsg.states["noarp"]
_SELF = ndmsg.flags["self"]
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
    """Make the host network's bridge exist, be up and carry exactly the host's addresses.

    The bridge gets a MAC of its own (from its name), for otherwise it takes the lowest
    of its ports' and changes whenever a tap comes or goes, and guests would keep
    talking to a router MAC that is gone. The host routes the /64 (forwarding on) but
    never takes a router advertisement from the bridge, and accepted connections keep
    the packet mark that names a VM's port (for the metadata service).
    """
    write_sysctl("net.ipv4.tcp_fwmark_accept", "1")
    _ensure_bridge(
        network.bridge, stable_mac(network.bridge, 0), bridge_addresses(network), mtu=None
    )


def project_bridge_addresses(network: Network) -> set[tuple[str, int]]:
    """The host's addresses on a project network's bridge: the gateway, if the network
    has a prefix. No metadata addresses: that service is on the host network only."""
    if network.prefix is None or network.gateway is None:
        return set()
    prefix = ipaddress.IPv6Network(network.prefix, strict=True)
    gateway = ipaddress.IPv6Address(network.gateway)
    if gateway not in prefix:
        raise ValueError(f"gateway {gateway} is not in {prefix}")
    return {(str(gateway), prefix.prefixlen)}


def ensure_project_bridge(network: Network) -> None:
    """Make a project network's bridge exist, be up and carry the gateway address.

    Its MAC (and so its link-local address) and its gateway are the same on every host:
    an anycast gateway, since each host routes for its own VMs (the guard keeps the
    host's frames off the VXLAN). No multicast snooping: with it, neighbour discovery
    would hang on a querier that no one runs.
    """
    _ensure_bridge(
        network.bridge,
        network.mac,
        project_bridge_addresses(network),
        mtu=network.mtu,
        snooping=False,
    )


def _ensure_bridge(
    name: str,
    mac: str,
    wanted: set[tuple[str, int]],
    *,
    mtu: int | None,
    snooping: bool = True,
) -> None:
    write_sysctl("net.ipv6.conf.all.forwarding", "1")
    with IPRoute() as ipr:
        index = _index(ipr, name)
        if index is None:
            options: dict[str, object] = {} if snooping else {"br_mcast_snooping": 0}
            ipr.link("add", ifname=name, kind="bridge", address=mac, **options)
            index = _index(ipr, name)
            assert index is not None
        link = ipr.get_links(index)[0]
        if link.get_attr("IFLA_ADDRESS") != mac:
            ipr.link("set", index=index, address=mac)
        if not snooping and _info_data(link).get_attr("IFLA_BR_MCAST_SNOOPING") != 0:
            ipr.link("set", index=index, kind="bridge", br_mcast_snooping=0)
        if mtu is not None and link.get_attr("IFLA_MTU") != mtu:
            ipr.link("set", index=index, mtu=mtu)
        write_sysctl(f"net.ipv6.conf.{name}.accept_ra", "0")
        write_sysctl(f"net.ipv6.conf.{name}.forwarding", "1")
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
            # No duplicate address detection: the addresses are the host's by design
            # (a project network's gateway is on every host), and a tentative address
            # could not be bound by the metadata service.
            ipr.addr("add", index=index, address=missing, prefixlen=length, flags=_IFA_F_NODAD)


def _info_data(link: Any) -> Any:
    """A link's kind-specific attributes (IFLA_INFO_DATA)."""
    info = link.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_DATA") if info is not None else None


def ensure_tap(name: str, bridge: str, mtu: int | None = None) -> None:
    """Make the tap `name` exist, be up and be a port of `bridge` (moved there from
    another bridge if need be), with `mtu` if given.

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
        if mtu is not None and ipr.get_links(index)[0].get_attr("IFLA_MTU") != mtu:
            ipr.link("set", index=index, mtu=mtu)
        ipr.link("set", index=index, master=master, state="up")


@dataclass(frozen=True)
class Seen:
    """One of the agent's links as it is."""

    master: str | None
    """The bridge it is a port of."""
    mtu: int


def inventory() -> dict[str, Seen]:
    """The agent's links (`nb…`, `nx…`, `nt…`) by name, from one netlink dump."""
    with IPRoute() as ipr:
        found = list(ipr.get_links())
    names = {link["index"]: str(link.get_attr("IFLA_IFNAME")) for link in found}
    return {
        name: Seen(names.get(link.get_attr("IFLA_MASTER")), int(link.get_attr("IFLA_MTU")))
        for link in found
        if (name := names[link["index"]]).startswith((BRIDGE_PREFIX, VXLAN_PREFIX, TAP_PREFIX))
    }


@dataclass(frozen=True)
class Vxlan:
    """What a VXLAN device is made with; a device made otherwise is made again."""

    name: str
    vni: int
    local: str
    """This host's underlay address."""
    group: str | None
    """The multicast group that floods; None: unicast to the FDB's all-zeros entries."""
    device: int | None
    """The underlay link's index (for a group)."""
    port: int = VXLAN_PORT
    learning: bool = False
    """Never: what arrives over the underlay teaches the device nothing (a forged frame
    would teach it anything); the control plane says where each MAC is (`ensure_fdb`)."""


def vxlan_of(network: Network, underlay_address: str) -> Vxlan:
    """The VXLAN device of `network` on a host whose underlay address this is."""
    local = str(ipaddress.ip_address(underlay_address))
    device = None
    if network.group is not None:
        group = ipaddress.ip_address(network.group)
        if not group.is_multicast or group.version != ipaddress.ip_address(local).version:
            raise ValueError(f"cannot flood to {group} over the underlay {local}")
        device = underlay_link(local)
    return Vxlan(network.vxlan, network.vni, local, network.group, device)


def underlay_link(address: str) -> int:
    """The index of the link that holds `address`."""
    wanted = ipaddress.ip_address(address)
    with IPRoute() as ipr:
        for entry in ipr.get_addr():
            if ipaddress.ip_address(entry.get_attr("IFA_ADDRESS")) == wanted:
                return int(entry["index"])
    raise LookupError(f"no link has the underlay address {address}")


def _vxlan_options(vxlan: Vxlan) -> dict[str, object]:
    six = ipaddress.ip_address(vxlan.local).version == 6
    options: dict[str, object] = {
        "vxlan_id": vxlan.vni,
        "vxlan_port": vxlan.port,
        "vxlan_learning": int(vxlan.learning),
        "vxlan_local6" if six else "vxlan_local": vxlan.local,
    }
    if vxlan.group is not None:
        options["vxlan_group6" if six else "vxlan_group"] = vxlan.group
        options["vxlan_link"] = vxlan.device
    return options


def _vxlan_seen(link: Any) -> Vxlan | None:
    data = _info_data(link)
    if data is None or link.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_KIND") != "vxlan":
        return None
    local = data.get_attr("IFLA_VXLAN_LOCAL6") or data.get_attr("IFLA_VXLAN_LOCAL")
    group = data.get_attr("IFLA_VXLAN_GROUP6") or data.get_attr("IFLA_VXLAN_GROUP")
    return Vxlan(
        name=str(link.get_attr("IFLA_IFNAME")),
        vni=data.get_attr("IFLA_VXLAN_ID"),
        local=str(ipaddress.ip_address(local)) if local else "",
        group=str(ipaddress.ip_address(group)) if group else None,
        device=data.get_attr("IFLA_VXLAN_LINK") if group else None,
        port=data.get_attr("IFLA_VXLAN_PORT"),
        learning=bool(data.get_attr("IFLA_VXLAN_LEARNING")),
    )


def ensure_vxlan(vxlan: Vxlan, bridge: str, mtu: int) -> bool:
    """Make the VXLAN device exist as `vxlan` says, up, with `mtu`, a port of `bridge`.
    True if it was (re)made. A device with another VNI, local address, group or port
    is deleted and made again: the kernel changes none of them in place."""
    if not vxlan.name.startswith(VXLAN_PREFIX):
        raise ValueError(f"a VXLAN device's name starts with {VXLAN_PREFIX!r}: {vxlan.name!r}")
    made = False
    with IPRoute() as ipr:
        master = _index(ipr, bridge)
        if master is None:
            raise LookupError(f"no bridge {bridge}")
        index = _index(ipr, vxlan.name)
        if index is not None and _vxlan_seen(ipr.get_links(index)[0]) != vxlan:
            ipr.link("del", index=index)
            index = None
        if index is None:
            ipr.link("add", ifname=vxlan.name, kind="vxlan", mtu=mtu, **_vxlan_options(vxlan))
            index = _index(ipr, vxlan.name)
            assert index is not None
            made = True
        write_sysctl(f"net.ipv6.conf.{vxlan.name}.disable_ipv6", "1")
        if ipr.get_links(index)[0].get_attr("IFLA_MTU") != mtu:
            ipr.link("set", index=index, mtu=mtu)
        ipr.link("set", index=index, master=master, state="up")
    return made


FdbEntries = set[tuple[str, str]]
"""(MAC, underlay address) pairs of a VXLAN device's FDB."""


def fdb_entries(vxlan: str) -> FdbEntries:
    """The (MAC, underlay address) entries of `vxlan`'s own FDB (not its bridge's): the
    all-zeros ones flood, the others send a MAC's frames to its host."""
    with IPRoute() as ipr:
        index = _index(ipr, vxlan)
        if index is None:
            return set()
        entries = ipr.fdb("dump", ifindex=index)
        return {
            (
                str(entry.get_attr("NDA_LLADDR")),
                str(ipaddress.ip_address(entry.get_attr("NDA_DST"))),
            )
            for entry in entries
            if entry["ifindex"] == index and entry.get_attr("NDA_DST")
        }


def flood_remotes(vxlan: str) -> list[str]:
    """The underlay addresses that `vxlan`'s all-zeros FDB entries flood to."""
    return sorted(remote for mac, remote in fdb_entries(vxlan) if mac == ALL_ZEROS)


def ensure_fdb(
    vxlan: str, remotes: list[str], macs: dict[str, str]
) -> tuple[FdbEntries, FdbEntries]:
    """Make `vxlan`'s FDB exactly: all-zeros entries flooding to `remotes` (head-end
    replication; none with a multicast group, whose entry the kernel keeps itself) and
    one entry per MAC of `macs` (MAC → its host's underlay address). The entries
    (added, removed)."""
    wanted = {(ALL_ZEROS, str(ipaddress.ip_address(remote))) for remote in remotes}
    wanted |= {(mac, str(ipaddress.ip_address(remote))) for mac, remote in macs.items()}
    present = fdb_entries(vxlan)
    group = {
        (mac, remote)
        for mac, remote in present
        if mac == ALL_ZEROS and ipaddress.ip_address(remote).is_multicast
    }
    present -= group
    with IPRoute() as ipr:
        index = _index(ipr, vxlan)
        if index is None:
            raise LookupError(f"no VXLAN device {vxlan}")
        # Added first: the segment never loses a remote that stays. A MAC has one
        # entry, which `replace` points at its (new) host.
        for mac, remote in sorted(wanted - present):
            if mac == ALL_ZEROS:
                ipr.fdb("append", ifindex=index, lladdr=mac, dst=remote)
            else:
                # The device's own entry (self), not one of its bridge's; as `append`
                # would make it, which pyroute2 fills in only for add, append, del.
                ipr.fdb(
                    "replace", ifindex=index, lladdr=mac, dst=remote, state=_STATIC, flags=_SELF
                )
        moved = {mac for mac, _ in wanted if mac != ALL_ZEROS}
        for mac, remote in sorted(present - wanted):
            if mac not in moved:
                ipr.fdb("del", ifindex=index, lladdr=mac, dst=remote)
    return wanted - present, present - wanted


def delete_link(name: str) -> bool:
    """Remove a tap, VXLAN device or bridge; False if it was not there."""
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


def vxlans() -> list[str]:
    """The agent's VXLAN devices present here (`nx…`)."""
    return _names(VXLAN_PREFIX)


def taps() -> list[str]:
    """The agent's taps present here (`nt…`)."""
    return _names(TAP_PREFIX)

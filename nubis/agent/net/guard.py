"""The guard: what a VM may send through its tap, and the mark that names its port.

One nftables table of the bridge family, `bridge nubis_guard`, owned by nubis. It sees
every frame a VM sends before the bridge forwards or delivers it, whatever its
destination (another VM, the host, the outside), so one place decides. Per tap:

- every frame is marked with the VM's mark (`metadata.mark_of`); the mark stays on the
  packet up to the host's sockets, which is how the metadata service knows the port a
  request came in on;
- frames whose source MAC is not the NIC's are dropped; so is every ether type but
  IPv6, ARP and IPv4 (this also drops VLAN-tagged frames, whose inner packet the rules
  below would not look at);
- IPv6 must come from the NIC's address, its EUI-64 link-local or `::` (duplicate
  address detection, which may only carry neighbour solicitations and MLD reports);
  neighbour advertisements may only speak for those addresses (else a VM could make
  the host send it another VM's traffic), and so may the solicitations of duplicate
  address detection (else a VM could make a neighbour's address fail it at boot);
  router advertisements, redirects and DHCPv6 answers (to the client port, 546,
  whatever port they claim to come from) are dropped, and so is ICMPv6 that comes in
  fragments: neighbour discovery is never fragmented (RFC 6980), and a first fragment
  without the ICMPv6 header would hide an advertisement's type from the rules above
  (RFC 7113);
- IPv4 is for the metadata service only, the network being IPv6-only: a guest may
  reach 169.254.169.254 from a link-local (169.254/16) address, and ARP only with its
  own MAC and such an address; everything else IPv4, DHCP answers included, is
  dropped;
- a frame from a tap the guard does not know (made, but not yet or no longer desired)
  is dropped.

In the other direction, an answer of the metadata service (source 169.254.169.254 or
fe80::a9fe:a9fe) carrying a VM's mark leaves only through that VM's taps: a VM that
poisons the host's neighbour cache still cannot receive another VM's metadata.
The host's own packets carry mark 0 and pass.

A NIC in a project network (`GuardedNic.openings` not None) is guarded the same way,
but carries IPv6 only (no IPv4, no ARP: the metadata service is on the host network's
NIC), and one with no address (`ipam none`) may only speak from its link-local address
and `::`. The host's own frames never leave through a VXLAN port (`nx…`), nor does the
host take any from one: each host is the router of its own VMs only, with the same
gateway address and MAC as every other host in the network.

The firewall of project networks' NICs is a second table, `inet nubis_firewall`, since
it must follow connections and this kernel has no connection tracking in the bridge
family (CONFIG_NF_CONNTRACK_BRIDGE). It splits the world in two:

- inside: what the bridge forwards from one of its ports to another (another tap of
  the network on this host, or its VXLAN port). All of it passes: the network is one
  segment, as if switched. (br_netfilter shows these frames to the IPv6 forward hook
  as coming in by the bridge: that tells them apart.)
- outside: what the host routes into the bridge (forward hook) or sends itself (output
  hook). Answers (`ct state established,related`), neighbour discovery, router
  advertisements, MLD and ICMPv6 errors pass; the rest goes to the chain of the NIC
  whose address (or link-local address) it is for, which accepts what the network's
  and the VM's rules open and drops the rest. A packet for no NIC's address is dropped.

The same table keeps the host's underlay to itself: nothing a VM sends (through any
of the agent's bridges) reaches the host's VXLAN or peer-probe ports, nor those of the
other hosts it knows, and VXLAN is taken only from the underlay addresses of the hosts
that share a project network with this one (`remotes`). The kernel's VXLAN socket
decapsulates by VNI alone: a datagram a VM sent to port 4789 would otherwise land,
"inside", on another tenant's bridge.

Both tables are replaced in one `nft -f` transaction, so no packet ever meets a half
made or missing ruleset, nor a firewall that is open while its rules change. Whoever
else changes the ruleset (`systemctl restart nftables` flushes all of it) is noticed
by the ruleset's generation, and the tables are put back (`Applied`).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from pyroute2.netlink import NLM_F_REQUEST  # type: ignore[import-untyped]
from pyroute2.netlink.nfnetlink import nfgen_msg  # type: ignore[import-untyped]
from pyroute2.netlink.nfnetlink.nftsocket import (  # type: ignore[import-untyped]
    NFT_MSG_GETGEN,
    NFT_MSG_GETTABLE,
    NFTSocket,
)

from nubis.addresses import METADATA_IPV4, METADATA_IPV6, link_local, mark_of
from nubis.protocol import MAC_PATTERN, PROBE_PORT, VXLAN_PORT, FirewallRule, Network, VmSpec

log = logging.getLogger(__name__)

TABLE = "bridge nubis_guard"
FIREWALL_TABLE = "inet nubis_firewall"
VXLAN_PORTS = '"nx*"'
"""Every VXLAN device of the agent's (links.VXLAN_PREFIX), as nft matches a name."""
BRIDGES = '"nb*"'
"""Every bridge of the agent's (links.BRIDGE_PREFIX): what comes in by one came from a VM
(or through a VM's network)."""
TAPS = '"nt*"'
"""Every tap of the agent's (links.TAP_PREFIX)."""
UNDERLAY_PORTS = f"{{ {VXLAN_PORT}, {PROBE_PORT} }}"

_TAP = re.compile(r"^nt[0-9a-z]{1,13}$")
_BRIDGE = re.compile(r"^nb[0-9a-z-]{1,13}$")
_ICMPV6_TARGET = "@th,64,128"
"""The target address of a neighbour advertisement: bytes 8 to 24 of the ICMPv6 header.
nftables has no name for it."""
_PROTOCOLS = ("tcp", "udp", "icmp", "any")
_FROM_OUTSIDE = (
    "destination-unreachable, packet-too-big, time-exceeded, parameter-problem, "
    "mld-listener-query, mld-listener-report, mld-listener-done, mld2-listener-report, "
    "nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert"
)
"""The ICMPv6 the host may always send a project network's NIC: what the link and the
path need to work."""


def _check_address(text: str) -> None:
    """Refuse anything but an IPv6 address in its normal form (and so without a scope,
    which may be any text)."""
    address = ipaddress.IPv6Address(text)
    if address.scope_id is not None or str(address) != text:
        raise ValueError(f"not an IPv6 address in its normal form: {text!r}")


@dataclass(frozen=True)
class Opening:
    """What one firewall rule lets in from outside a project network."""

    protocol: str
    """tcp, udp, icmp (ICMPv6) or any."""
    port_min: int | None
    port_max: int | None
    source: str
    """An IPv6 network."""

    def __post_init__(self) -> None:
        if self.protocol not in _PROTOCOLS:
            raise ValueError(f"not a protocol: {self.protocol!r}")
        ports = (self.port_min, self.port_max)
        if ports != (None, None):
            if self.protocol not in ("tcp", "udp"):
                raise ValueError(f"{self.protocol} has no ports")
            if None in ports:
                raise ValueError("a port range has both ends")
            assert self.port_min is not None and self.port_max is not None
            if not 1 <= self.port_min <= self.port_max <= 65535:
                raise ValueError(f"not a port range: {self.port_min}-{self.port_max}")
        network = ipaddress.IPv6Network(self.source, strict=True)
        if network.network_address.scope_id is not None or str(network) != self.source:
            raise ValueError(f"not an IPv6 network in its normal form: {self.source!r}")

    @classmethod
    def of(cls, rule: FirewallRule) -> Opening:
        """A rule as the ruleset takes it: one port is a range of one, the source its
        network (host bits cleared)."""
        port_min, port_max = rule.port_min, rule.port_max
        if (port_min is None) != (port_max is None):
            port_min = port_max = port_min or port_max
        source = str(ipaddress.IPv6Network(rule.source, strict=False))
        return cls(rule.protocol, port_min, port_max, source)

    def rule(self) -> str:
        """The nft rule that accepts it."""
        parts = []
        if ipaddress.IPv6Network(self.source).prefixlen:
            parts.append(f"ip6 saddr {self.source}")
        if self.protocol in ("tcp", "udp"):
            if self.port_min is None:
                parts.append(f"meta l4proto {self.protocol}")
            elif self.port_min == self.port_max:
                parts.append(f"{self.protocol} dport {self.port_min}")
            else:
                parts.append(f"{self.protocol} dport {self.port_min}-{self.port_max}")
        elif self.protocol == "icmp":
            parts.append("meta l4proto ipv6-icmp")
        return " ".join([*parts, "accept"])


@dataclass(frozen=True)
class GuardedNic:
    """One tap and what its VM may claim to be on it."""

    tap: str
    mac: str
    address: str | None
    """The NIC's IPv6 address (None: a project network without addresses)."""
    mark: int
    openings: tuple[Opening, ...] | None = None
    """None: the host network's NIC. Else a project network's: what the firewall lets
    in from outside the network."""
    bridge: str | None = None
    """The project network's bridge (with `openings`)."""

    def __post_init__(self) -> None:
        # The ruleset is text for nft: nothing but checked values may reach it.
        if not _TAP.match(self.tap):
            raise ValueError(f"not a tap name: {self.tap!r}")
        if not re.match(MAC_PATTERN, self.mac):
            raise ValueError(f"not a MAC address: {self.mac!r}")
        if self.address is not None or self.openings is None:
            _check_address(self.address or "")
        if not 0 < self.mark < 2**32:
            raise ValueError(f"not a 32-bit, non-zero mark: {self.mark}")
        if (self.openings is None) != (self.bridge is None):
            raise ValueError("a project network's NIC has both openings and a bridge")
        if self.bridge is not None and not _BRIDGE.match(self.bridge):
            raise ValueError(f"not a bridge name: {self.bridge!r}")

    @property
    def in_project_network(self) -> bool:
        return self.openings is not None


def guarded(vms: Iterable[VmSpec], networks: Iterable[Network] = ()) -> list[GuardedNic]:
    """Every NIC of `vms`, marked with its VM's mark; a project network's NIC (from
    `networks`) with its network's and its VM's rules."""
    by_id = {network.id: network for network in networks}
    nics = []
    for vm in vms:
        for nic in vm.nics:
            openings, bridge = None, None
            if nic.network is not None:
                network = by_id.get(nic.network)
                if network is None:
                    raise ValueError(f"NIC {nic.tap} is in {nic.network}, which is not desired")
                rules = [*network.rules, *vm.rules]
                openings = tuple(Opening.of(rule) for rule in rules)
                bridge = network.bridge
            nics.append(
                GuardedNic(
                    tap=nic.tap,
                    mac=nic.mac,
                    address=nic.address,
                    mark=mark_of(vm.id),
                    openings=openings,
                    bridge=bridge,
                )
            )
    return nics


def _hex128(address: str) -> str:
    return f"0x{int(ipaddress.IPv6Address(address)):032x}"


def _tap_chains(nic: GuardedNic) -> str:
    if nic.in_project_network:
        return _project_tap_chains(nic)
    tap = nic.tap
    return f"""\
  chain from_{tap} {{
    meta mark set {nic.mark:#010x}
    ether saddr != {nic.mac} drop
    ether type vmap {{ ip6 : jump from_{tap}_ip6, arp : jump from_{tap}_arp, \
ip : jump from_{tap}_ip }}
    drop
  }}
{_ip6_chains(nic)}\
  chain from_{tap}_arp {{
    arp saddr ether != {nic.mac} drop
    arp saddr ip {METADATA_IPV4} drop
    arp saddr ip != {{ 0.0.0.0, 169.254.0.0/16 }} drop
    accept
  }}
  chain from_{tap}_ip {{
    ip saddr {METADATA_IPV4} drop
    ip saddr 169.254.0.0/16 ip daddr {METADATA_IPV4} accept
    drop
  }}
  chain to_{tap} {{
    ip6 saddr {METADATA_IPV6} meta mark != {{ 0x0, {nic.mark:#010x} }} drop
    ip saddr {METADATA_IPV4} meta mark != {{ 0x0, {nic.mark:#010x} }} drop
  }}
"""


def _ip6_chains(nic: GuardedNic) -> str:
    """What a NIC may send over IPv6: from its own addresses; from `::` only the
    solicitations of duplicate address detection for those addresses, and MLD reports."""
    addresses = _own(nic)
    own = f"{{ {', '.join([*addresses, '::'])} }}"
    targets = f"{{ {', '.join(_hex128(address) for address in addresses)} }}"
    tap = nic.tap
    return f"""\
  chain from_{tap}_ip6 {{
    ip6 saddr != {own} drop
    ip6 saddr :: jump from_{tap}_unspecified
    icmpv6 type {{ nd-router-advert, nd-redirect }} drop
    icmpv6 type nd-neighbor-advert {_ICMPV6_TARGET} != {targets} drop
    udp dport 546 drop
    exthdr frag exists jump fragment
    accept
  }}
  chain from_{tap}_unspecified {{
    icmpv6 type mld2-listener-report return
    icmpv6 type nd-neighbor-solicit {_ICMPV6_TARGET} {targets} return
    drop
  }}
"""


def _own(nic: GuardedNic) -> list[str]:
    """The unicast addresses a NIC may speak from."""
    local = link_local(nic.mac)
    return [local] if nic.address is None else [nic.address, local]


def _project_tap_chains(nic: GuardedNic) -> str:
    tap = nic.tap
    return f"""\
  chain from_{tap} {{
    meta mark set {nic.mark:#010x}
    ether saddr != {nic.mac} drop
    ether type ip6 jump from_{tap}_ip6
    drop
  }}
{_ip6_chains(nic)}\
"""


# ICMPv6 in fragments: a non-first fragment (its next header is ICMPv6), or a first one
# (the ICMPv6 header may not be in it). A first fragment whose header chain ends beyond
# it has no known protocol at all: `!= ipv6-icmp` does not match it either, so it is
# dropped too.
_FRAGMENT_CHAIN = """\
  chain fragment {
    meta l4proto != ipv6-icmp return
    drop
  }
"""


@dataclass(frozen=True)
class Underlay:
    """What the guard knows of the underlay: the other hosts' addresses."""

    remotes: tuple[str, ...] = ()
    """Those VXLAN is taken from: the hosts that share a project network with this one."""
    hosts: tuple[str, ...] = ()
    """Every other host this one knows of (its peers and its remotes): no VM's traffic
    reaches their underlay ports through this host."""

    def __post_init__(self) -> None:
        # The ruleset is text for nft: nothing but checked values may reach it.
        for address in (*self.remotes, *self.hosts):
            parsed = ipaddress.ip_address(address)
            if str(parsed) != address or getattr(parsed, "scope_id", None) is not None:
                raise ValueError(f"not an address in its normal form: {address!r}")

    @classmethod
    def of(cls, networks: Iterable[Network], peers: Iterable[str] = ()) -> Underlay:
        remotes = sorted({str(ipaddress.ip_address(r)) for n in networks for r in n.remotes})
        hosts = sorted({*remotes, *(str(ipaddress.ip_address(p)) for p in peers)})
        return cls(tuple(remotes), tuple(hosts))


def _by_family(addresses: Iterable[str]) -> dict[str, list[str]]:
    """IPv6 and IPv4 addresses apart, as nft's `ip6` and `ip` take them."""
    found: dict[str, list[str]] = {"ip6": [], "ip": []}
    for address in addresses:
        found["ip6" if ipaddress.ip_address(address).version == 6 else "ip"].append(address)
    return found


def _underlay_rules(underlay: Underlay) -> tuple[str, str]:
    """The input and forward rules that keep VMs off the underlay ports, and VXLAN to
    the remotes."""
    family = {"ip6": "ipv6", "ip": "ipv4"}
    from_vms = f"iifname {BRIDGES} udp dport {UNDERLAY_PORTS}"
    into = [f"    {from_vms} drop"]
    for protocol, remotes in _by_family(underlay.remotes).items():
        if remotes:
            into.append(
                f"    udp dport {VXLAN_PORT} {protocol} saddr != {{ {', '.join(remotes)} }} drop"
            )
        else:
            into.append(f"    meta nfproto {family[protocol]} udp dport {VXLAN_PORT} drop")
    through = [
        f"    {from_vms} {protocol} daddr {{ {', '.join(hosts)} }} drop"
        for protocol, hosts in _by_family(underlay.hosts).items()
        if hosts
    ]
    return "".join(f"{line}\n" for line in into), "".join(f"{line}\n" for line in through)


def ruleset(nics: Iterable[GuardedNic], underlay: Underlay | None = None) -> str:
    """The nft script that replaces the guard and firewall tables by ones guarding
    exactly `nics` (and the underlay, as `underlay` knows it).

    Creating each table before deleting it makes the delete succeed on a host that has
    none yet; the whole script runs as one transaction.
    """
    nics = sorted(nics, key=lambda nic: nic.tap)
    taps = [nic.tap for nic in nics]
    if len(set(taps)) != len(taps):
        raise ValueError("a tap is named twice")
    lines = [*_replace(TABLE), *_replace(FIREWALL_TABLE), f"table {TABLE} {{"]
    # Ahead of other bridge tables (at the usual filter priority, -200), so that they
    # already see the VM's mark.
    lines.append("  chain prerouting {")
    lines.append("    type filter hook prerouting priority -300; policy accept;")
    if nics:
        entries = ", ".join(f'"{tap}" : jump from_{tap}' for tap in taps)
        lines.append(f"    iifname vmap {{ {entries} }}")
    lines.append(f"    iifname {TAPS} drop")
    lines.append("  }")
    # The host's own frames toward a host network's tap, and never through a VXLAN
    # port (nor in from one): another host's VMs have their own router.
    host_taps = [nic.tap for nic in nics if not nic.in_project_network]
    lines.append("  chain output {")
    lines.append("    type filter hook output priority 0; policy accept;")
    if host_taps:
        entries = ", ".join(f'"{tap}" : jump to_{tap}' for tap in host_taps)
        lines.append(f"    oifname vmap {{ {entries} }}")
    lines.append(f"    oifname {VXLAN_PORTS} drop")
    lines.append("  }")
    lines.append("  chain input {")
    lines.append("    type filter hook input priority 0; policy accept;")
    lines.append(f"    iifname {VXLAN_PORTS} drop")
    lines.append("  }")
    text = "\n".join(lines) + "\n" + _FRAGMENT_CHAIN
    for nic in nics:
        text += _tap_chains(nic)
    return text + "}\n" + _firewall(nics, underlay or Underlay())


def _firewall(nics: list[GuardedNic], underlay: Underlay) -> str:
    """The firewall table: the underlay kept from VMs, and what the host routes or
    sends into a project network's bridge, per NIC (found by its destination address)."""
    bridges: dict[str, list[GuardedNic]] = {}
    for nic in nics:
        if nic.bridge is not None:
            bridges.setdefault(nic.bridge, []).append(nic)
    hooks = ""
    if bridges:
        entries = ", ".join(f'"{bridge}" : jump into_{bridge}' for bridge in sorted(bridges))
        hooks = f"    oifname vmap {{ {entries} }}\n"
    into, through = _underlay_rules(underlay)
    text = f"""\
table {FIREWALL_TABLE} {{
  chain input {{
    type filter hook input priority 0; policy accept;
{into}\
  }}
  chain forward {{
    type filter hook forward priority 0; policy accept;
{through}\
{hooks}\
  }}
  chain output {{
    type filter hook output priority 0; policy accept;
{hooks}\
  }}
"""
    for bridge, members in sorted(bridges.items()):
        text += _bridge_chain(bridge, members)
    for nic in nics:
        if nic.openings is not None:
            rules = "".join(f"    {opening.rule()}\n" for opening in nic.openings)
            text += f"  chain to_{nic.tap} {{\n{rules}    drop\n  }}\n"
    return text + "}\n"


def _bridge_chain(bridge: str, nics: list[GuardedNic]) -> str:
    by_address: dict[str, str] = {}
    for nic in nics:
        for address in _own(nic):
            if by_address.setdefault(address, nic.tap) != nic.tap:
                raise ValueError(f"{address} is claimed twice in {bridge}")
    entries = ", ".join(f"{address} : jump to_{tap}" for address, tap in by_address.items())
    # br_netfilter shows this hook the frames the bridge forwards from port to port too,
    # coming in by the bridge itself: those are inside the network, and pass.
    return f"""\
  chain into_{bridge} {{
    iifname "{bridge}" accept
    ct state established,related accept
    icmpv6 type {{ {_FROM_OUTSIDE} }} accept
    ip6 daddr vmap {{ {entries} }}
    drop
  }}
"""


def _replace(table: str) -> list[str]:
    return [f"table {table}", f"delete table {table}"]


def removal() -> str:
    """The nft script that removes the guard and firewall tables, present or not."""
    return "".join(f"{line}\n" for line in [*_replace(TABLE), *_replace(FIREWALL_TABLE)])


def apply(script: str) -> None:
    """Run an nft script (from `ruleset` or `removal`) as one transaction."""
    _nft(script)


def check(script: str) -> None:
    """Have nft parse and check a script without applying it (`nft --check`)."""
    _nft(script, "--check")


def _nft(script: str, *options: str) -> None:
    done = subprocess.run(
        ["nft", *options, "-f", "-"], input=script, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"nft refused the guard ruleset: {done.stderr.strip()}")


def remove() -> None:
    apply(removal())


_FAMILIES = {1: "inet", 7: "bridge"}
"""nftables' protocol family numbers (NFPROTO_INET, NFPROTO_BRIDGE) by nft's names."""


def generation() -> int:
    """The ruleset's generation: it grows with every change anyone makes to any table
    of this network namespace. One netlink request, no process."""
    with NFTSocket() as nft:
        answer = nft.request_get(nfgen_msg(), NFT_MSG_GETGEN, msg_flags=NLM_F_REQUEST)
    return int(answer[0].get_attr("NFTA_GEN_ID"))


def tables() -> dict[str, int]:
    """The guard's and the firewall's tables present now, with the handle each was made
    with (a table made again has another)."""
    with NFTSocket(nfgen_family=0) as nft:
        found = nft.request_get(nfgen_msg(), NFT_MSG_GETTABLE)
    present = {
        f"{_FAMILIES.get(table['nfgen_family'])} {table.get_attr('NFTA_TABLE_NAME')}": int(
            table.get_attr("NFTA_TABLE_HANDLE")
        )
        for table in found
    }
    return {name: handle for name, handle in present.items() if name in (TABLE, FIREWALL_TABLE)}


class Applied:
    """The guard as this process last applied it, put back when anyone removed it.

    `ensure` costs one netlink request while the ruleset's generation is the one seen
    right after the guard was applied. When another program changed the ruleset since
    (`systemctl restart nftables` flushes all of it), the guard's tables are looked up,
    and applied again unless they are still the ones this process made.
    """

    def __init__(self) -> None:
        self._script: str | None = None
        self._generation: int | None = None
        self._tables: dict[str, int] = {}

    def ensure(self, script: str) -> bool:
        """Make the guard `script` (from `ruleset` or `removal`) hold; True if it had to
        be applied (it changed, or its tables had been removed or made again)."""
        if script == self._script and self._generation is not None:
            now = generation()
            if now == self._generation:
                return False
            if tables() == self._tables:
                self._generation = now
                return False
            log.warning("the guard's nftables tables were removed or replaced: applying again")
        before = generation()
        apply(script)
        self._script = script
        self._tables = tables()
        after = generation()
        # Another change right after ours is looked at in the next pass.
        self._generation = after if after == before + 1 else None
        return True

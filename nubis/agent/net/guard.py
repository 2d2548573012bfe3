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
  the host send it another VM's traffic); router advertisements, redirects and DHCPv6
  server answers are dropped;
- IPv4 is for the metadata service only, the network being IPv6-only: a guest may
  reach 169.254.169.254 from a link-local (169.254/16) address, and ARP only with its
  own MAC and such an address; everything else IPv4, DHCP server answers included, is
  dropped.

In the other direction, an answer of the metadata service (source 169.254.169.254 or
fe80::a9fe:a9fe) carrying a VM's mark leaves only through that VM's taps: a VM that
poisons the host's neighbour cache still cannot receive another VM's metadata.
The host's own packets carry mark 0 and pass.

The whole table is replaced in one `nft -f` transaction, so no frame ever meets a half
made or missing ruleset.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from nubis.agent.net.addresses import METADATA_IPV4, METADATA_IPV6, link_local
from nubis.agent.net.metadata import mark_of
from nubis.protocol import MAC_PATTERN, VmSpec

TABLE = "bridge nubis_guard"

_TAP = re.compile(r"^nt[0-9a-z]{1,13}$")
_ICMPV6_TARGET = "@th,64,128"
"""The target address of a neighbour advertisement: bytes 8 to 24 of the ICMPv6 header.
nftables has no name for it."""


@dataclass(frozen=True)
class GuardedNic:
    """One tap and what its VM may claim to be on it."""

    tap: str
    mac: str
    address: str
    """The NIC's IPv6 address."""
    mark: int

    def __post_init__(self) -> None:
        # The ruleset is text for nft: nothing but checked values may reach it.
        if not _TAP.match(self.tap):
            raise ValueError(f"not a tap name: {self.tap!r}")
        if not re.match(MAC_PATTERN, self.mac):
            raise ValueError(f"not a MAC address: {self.mac!r}")
        ipaddress.IPv6Address(self.address)
        if not 0 < self.mark < 2**32:
            raise ValueError(f"not a 32-bit, non-zero mark: {self.mark}")


def guarded(vms: Iterable[VmSpec]) -> list[GuardedNic]:
    """Every NIC of `vms`, marked with its VM's mark."""
    return [
        GuardedNic(tap=nic.tap, mac=nic.mac, address=nic.address or "", mark=mark_of(vm.id))
        for vm in vms
        for nic in vm.nics
    ]


def _hex128(address: str) -> str:
    return f"0x{int(ipaddress.IPv6Address(address)):032x}"


def _tap_chains(nic: GuardedNic) -> str:
    own = f"{{ {nic.address}, {link_local(nic.mac)}, :: }}"
    targets = f"{{ {_hex128(nic.address)}, {_hex128(link_local(nic.mac))} }}"
    tap = nic.tap
    return f"""\
  chain from_{tap} {{
    meta mark set {nic.mark:#010x}
    ether saddr != {nic.mac} drop
    ether type vmap {{ ip6 : jump from_{tap}_ip6, arp : jump from_{tap}_arp, \
ip : jump from_{tap}_ip }}
    drop
  }}
  chain from_{tap}_ip6 {{
    ip6 saddr != {own} drop
    ip6 saddr :: meta l4proto != ipv6-icmp drop
    ip6 saddr :: icmpv6 type != {{ nd-neighbor-solicit, mld2-listener-report }} drop
    icmpv6 type {{ nd-router-advert, nd-redirect }} drop
    icmpv6 type nd-neighbor-advert {_ICMPV6_TARGET} != {targets} drop
    udp sport 547 drop
    accept
  }}
  chain from_{tap}_arp {{
    arp saddr ether != {nic.mac} drop
    arp saddr ip {METADATA_IPV4} drop
    arp saddr ip != {{ 0.0.0.0, 169.254.0.0/16 }} drop
    accept
  }}
  chain from_{tap}_ip {{
    udp sport 67 drop
    ip saddr {METADATA_IPV4} drop
    ip saddr 169.254.0.0/16 ip daddr {METADATA_IPV4} accept
    drop
  }}
  chain to_{tap} {{
    ip6 saddr {METADATA_IPV6} meta mark != {{ 0x0, {nic.mark:#010x} }} drop
    ip saddr {METADATA_IPV4} meta mark != {{ 0x0, {nic.mark:#010x} }} drop
  }}
"""


def ruleset(nics: Iterable[GuardedNic]) -> str:
    """The nft script that replaces the guard table by one guarding exactly `nics`.

    Creating the table before deleting it makes the delete succeed on a host that has
    none yet; the three statements run as one transaction.
    """
    nics = sorted(nics, key=lambda nic: nic.tap)
    taps = [nic.tap for nic in nics]
    if len(set(taps)) != len(taps):
        raise ValueError("a tap is named twice")
    lines = [f"table {TABLE}", f"delete table {TABLE}", f"table {TABLE} {{"]
    # Ahead of other bridge tables (at the usual filter priority, -200), so that they
    # already see the VM's mark.
    lines.append("  chain prerouting {")
    lines.append("    type filter hook prerouting priority -300; policy accept;")
    if nics:
        entries = ", ".join(f'"{tap}" : jump from_{tap}' for tap in taps)
        lines.append(f"    iifname vmap {{ {entries} }}")
    lines.append("  }")
    lines.append("  chain output {")
    lines.append("    type filter hook output priority 0; policy accept;")
    if nics:
        entries = ", ".join(f'"{tap}" : jump to_{tap}' for tap in taps)
        lines.append(f"    oifname vmap {{ {entries} }}")
    lines.append("  }")
    text = "\n".join(lines) + "\n"
    for nic in nics:
        text += _tap_chains(nic)
    return text + "}\n"


def removal() -> str:
    """The nft script that removes the guard table, present or not."""
    return f"table {TABLE}\ndelete table {TABLE}\n"


def apply(script: str) -> None:
    """Run an nft script (from `ruleset` or `removal`) as one transaction."""
    done = subprocess.run(
        ["nft", "-f", "-"], input=script, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"nft refused the guard ruleset: {done.stderr.strip()}")


def remove() -> None:
    apply(removal())

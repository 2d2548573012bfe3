"""The host's VM networks, converged as a whole: the host network and the project networks.

The host network is a bridge with the host's /64, announced by radvd (and the metadata
service, which the reconciler runs on it). A project network on this host is a bridge
(its MAC and gateway the same on every host), a VXLAN device as one of its ports that
floods to the network's multicast group or, without one, to each other host of the
network (all-zeros FDB entries, kept equal to `Network.remotes`), and radvd on
`auto` networks. Each NIC's tap is a port of its network's bridge; the guard and the
firewall (`guard.py`) cover every tap.

Whatever is there under the agent's names (`nb…`, `nx…`, `nt…`, radvd configs) that
the desired state does not name is removed and reported. With no VM, nothing of it
is left. A pass that finds everything as the last one left it costs one netlink dump.
"""

from __future__ import annotations

import logging
from pathlib import Path

from nubis.agent.net import guard, links
from nubis.agent.net.radvd import Radvd
from nubis.agent.net.radvd import bridges as radvd_bridges
from nubis.protocol import Desired, HostNetwork, Ipam, Network

log = logging.getLogger(__name__)


class Networks:
    def __init__(self, state_dir: Path, underlay_address: str | None = None) -> None:
        """`state_dir` holds the radvd instances' files; `underlay_address` is the
        host's address that VXLAN speaks from (needed once a project network is)."""
        self.state_dir = state_dir
        self.underlay_address = underlay_address
        self._host: HostNetwork | None = None
        """The host network as the last pass set it up."""
        self._projects: dict[str, Network] = {}
        """Each project network (by bridge) as the last pass set it up."""
        self._guard = guard.Applied()

    @property
    def host_bridge(self) -> str | None:
        """The host network's bridge, while it is up."""
        return self._host.bridge if self._host is not None else None

    def converge(self, desired: Desired) -> list[str]:
        """Make the host's networks exactly those `desired`'s VMs need; what was removed.

        The guard goes first: it names taps, not links, so a tap is guarded before it
        is a port of any bridge, and a ruleset nft refuses leaves everything as it was.
        """
        host = desired.network if desired.vms else None
        projects = {n.bridge: n for n in desired.networks} if desired.vms else {}
        taps = ports(desired)
        if projects and self.underlay_address is None:
            raise RuntimeError("project networks need the host's underlay address")
        self._apply_guard(desired)

        removed: list[str] = []
        present = links.inventory()
        if host is not None and (host != self._host or host.bridge not in present):
            links.ensure_bridge(host)
        self._host = host
        for network in projects.values():
            removed += self._ensure_project(network, present)
        self._projects = dict(projects)
        removed += self._converge_radvd(host, projects)
        # Links the pass made are desired ones: what was there before it tells all.
        removed += _converge_taps(taps, present)
        bridges = set(projects) | ({host.bridge} if host is not None else set())
        vxlans = {network.vxlan for network in projects.values()}
        return removed + _remove_links(bridges | vxlans, present)

    def _converge_radvd(self, host: HostNetwork | None, projects: dict[str, Network]) -> list[str]:
        """radvd on the host network's bridge and on each `auto` network's."""
        announced: dict[str, HostNetwork | Network] = {}
        if host is not None:
            announced[host.bridge] = host
        announced |= {b: n for b, n in projects.items() if n.ipam is Ipam.AUTO}
        for bridge, announcing in announced.items():
            Radvd(self.state_dir, bridge).ensure(announcing)
        removed = []
        for bridge in radvd_bridges(self.state_dir):
            if bridge not in announced:
                Radvd(self.state_dir, bridge).stop()
                removed.append(f"radvd {bridge}")
        return removed

    def _ensure_project(self, network: Network, present: dict[str, links.Seen]) -> list[str]:
        """Set up one project network's bridge and VXLAN device, unless the last pass
        left them as they are now asked for; the FDB entries removed."""
        vxlan = present.get(network.vxlan)
        unchanged = (
            self._projects.get(network.bridge) == network
            and network.bridge in present
            and vxlan is not None
            and vxlan.master == network.bridge
        )
        if unchanged:
            return []
        assert self.underlay_address is not None
        links.ensure_project_bridge(network)
        device = links.vxlan_of(network, self.underlay_address)
        if links.ensure_vxlan(device, network.bridge, network.mtu):
            log.info("made %s (VNI %d) for %s", network.vxlan, network.vni, network.id)
        # With a group, the kernel keeps the group's own all-zeros entry.
        flooding = [] if network.group is not None else network.remotes
        macs = {entry.mac: entry.remote for entry in network.fdb}
        _, gone = links.ensure_fdb(network.vxlan, flooding, macs)
        return [
            f"fdb {network.vxlan} {remote}"
            if mac == links.ALL_ZEROS
            else f"fdb {network.vxlan} {mac} {remote}"
            for mac, remote in sorted(gone)
        ]

    def _apply_guard(self, desired: Desired) -> None:
        if desired.vms:
            underlay = guard.Underlay.of(desired.networks, (peer.address for peer in desired.peers))
            script = guard.ruleset(guard.guarded(desired.vms, desired.networks), underlay)
        else:
            script = guard.removal()
        self._guard.ensure(script)


def _converge_taps(taps: dict[str, Port], present: dict[str, links.Seen]) -> list[str]:
    """Each tap a port of its bridge with its MTU; the others removed."""
    removed = []
    for name, seen in sorted(present.items()):
        if name.startswith(links.TAP_PREFIX) and name not in taps:
            links.delete_link(name)
            removed.append(f"tap {name}")
        elif name in taps and (seen.master, seen.mtu) != _wanted(taps[name], seen.mtu):
            links.ensure_tap(name, *taps[name])
    for name, (bridge, mtu) in sorted(taps.items()):
        if name not in present:
            links.ensure_tap(name, bridge, mtu)
    return removed


def _remove_links(keep: set[str], present: dict[str, links.Seen]) -> list[str]:
    """Remove the agent's VXLAN devices and bridges but those in `keep`."""
    removed = []
    for name in sorted(present):
        if name in keep or name.startswith(links.TAP_PREFIX):
            continue
        links.delete_link(name)
        kind = "vxlan" if name.startswith(links.VXLAN_PREFIX) else "bridge"
        removed.append(f"{kind} {name}")
    return removed


Port = tuple[str, int | None]
"""A tap's bridge, and its MTU (None: as the kernel makes it)."""


def ports(desired: Desired) -> dict[str, Port]:
    """Each desired tap's bridge and MTU: the host network's bridge for NIC 0 (and any
    NIC without a network), else its network's bridge with the network's MTU."""
    networks = {network.id: network for network in desired.networks}
    found = {}
    for vm in desired.vms:
        for nic in vm.nics:
            if nic.network is None:
                found[nic.tap] = (desired.network.bridge, nic.mtu)
                continue
            network = networks.get(nic.network)
            if network is None:
                raise ValueError(f"NIC {nic.tap} is in {nic.network}, which is not desired")
            found[nic.tap] = (network.bridge, nic.mtu or network.mtu)
    return found


def _wanted(port: Port, mtu: int) -> tuple[str, int]:
    bridge, wanted_mtu = port
    return bridge, mtu if wanted_mtu is None else wanted_mtu

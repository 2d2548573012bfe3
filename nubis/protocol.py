"""The wire types between the control plane and host agents; both sides import only this.

Sizes are bytes, counts are integers.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


MAX_BYTES = 2**63 - 1
"""The largest size on the wire: what a 64-bit signed integer (the stores' sizes) holds."""
MAX_COUNT = 2**31 - 1
"""The largest count or revision on the wire: what every store's integer column holds."""


class HostReport(_Wire):
    """What a host is, as its agent found it."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]*$")
    arch: str = Field(min_length=1, max_length=16)
    cores: int = Field(gt=0, le=4096)
    threads: int = Field(gt=0, le=8192)
    memory_bytes: int = Field(gt=0, le=MAX_BYTES)
    hugepages: int = Field(ge=0, le=MAX_COUNT)
    """1 GiB huge pages set aside for VMs."""
    disk_bytes: int = Field(ge=0, le=MAX_BYTES)
    underlay_address: str = Field(min_length=2, max_length=45)
    acceleration: str = Field(pattern="^(kvm|tcg)$")
    """`kvm` only where a guest was seen to boot under it."""


class Registration(_Wire):
    join_token: str = Field(min_length=1, max_length=200)
    host: HostReport


class Registered(_Wire):
    host_id: str
    credential: str
    """The host's secret for every later call; the control plane keeps only its hash."""


class Heartbeat(_Wire):
    """I am alive (later: and this is what runs here)."""


# Desired state: what the control plane wants a host to run. The agent converges the
# host to it; whatever is there that it does not name is removed.

MAC_PATTERN = r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$"


class ImageRef(_Wire):
    """A base image a VM's disk is an overlay of; the agent fetches it on first use."""

    id: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(gt=0)
    virtual_size_bytes: int = Field(gt=0)


class Ipam(StrEnum):
    """How a network's NICs get their addresses."""

    NONE = "none"
    """Plain layer 2: no prefix, no address; the NICs have their link-local addresses."""
    MANUAL = "manual"
    """A /64 and an address per NIC, not announced: the guest sets the address it is
    told (the metadata service's network config says which)."""
    AUTO = "auto"
    """A /64 announced by router advertisements: the guest configures itself (SLAAC)."""


NETWORK_MTU = 1430
"""The MTU of a project network's links: 1500 less VXLAN's 70 bytes over IPv6."""


class Nic(_Wire):
    tap: str = Field(pattern=r"^nt[0-9a-z]{1,13}$")
    """The tap's interface name (at most 15 characters, `nt…`: the agent owns those)."""
    number: int = Field(ge=0, le=15)
    """Its place among the VM's NICs: 0 is the host network's, the others are project
    networks' (and may come and go while the VM runs)."""
    mac: str = Field(pattern=MAC_PATTERN)
    address: str | None
    """The NIC's IPv6 address: its network's /64 and the EUI-64 of `mac`, so that a
    guest's SLAAC address is this one; None on an `ipam none` network."""
    network: str | None = None
    """The project network's id (`Desired.networks`); None: the host network."""
    ipam: Ipam = Ipam.AUTO
    mtu: int | None = Field(default=None, ge=1280, le=9000)
    """The link's MTU, told to the guest (virtio `host_mtu`); None: 1500."""


class FirewallRule(_Wire):
    """Opens a port of a project network's NICs to sources outside the network."""

    protocol: Literal["tcp", "udp", "icmp", "any"]
    """`icmp` is ICMPv6."""
    port_min: int | None = Field(default=None, ge=1, le=65535)
    port_max: int | None = Field(default=None, ge=1, le=65535)
    """A port range, tcp and udp only; None: every port."""
    source: str
    """An IPv6 network the traffic may come from, e.g. `::/0`."""


class VmSpec(_Wire):
    id: str
    """The VM's public id; the agent names what it makes for the VM after it."""
    hostname: str
    cores: int = Field(gt=0)
    memory_bytes: int = Field(gt=0)
    disk_bytes: int = Field(gt=0)
    image: ImageRef
    running: bool
    """Whether the VM should run (else: exist, stopped)."""
    reboots: int = Field(ge=0)
    """Asks for a reboot each time it grows past the number the agent reports."""
    nics: list[Nic]
    ssh_keys: list[str]
    user_data: str | None = None
    rules: list[FirewallRule] = Field(default_factory=list)
    """The VM's own firewall rules, for each of its project network NICs."""


class HostNetwork(_Wire):
    """The host's own VM network: a bridge on which the host announces a /64 and routes it."""

    bridge: str = Field(pattern=r"^nb[0-9a-z-]{1,13}$")
    prefix: str
    """An IPv6 /64, e.g. `fd12:3456:789a:1::/64`."""
    gateway: str
    """The host's address on the bridge (the prefix's `::1`)."""


VXLAN_PORT = 4789
"""The UDP port of every host's VXLAN devices (IANA's)."""


class FdbEntry(_Wire):
    """Where a NIC of another host is: its MAC is reached through that host's address."""

    mac: str = Field(pattern=MAC_PATTERN)
    remote: str = Field(min_length=2, max_length=45)
    """The underlay address of the NIC's host."""


class Network(_Wire):
    """A project network on this host: one VXLAN segment, bridged to its VMs' taps.

    Every host that has a VM in it has the same bridge, with the same MAC and (with a
    prefix) the same gateway address: each host is the router of its own VMs, and its
    own frames never cross the VXLAN.
    """

    id: str
    bridge: str = Field(pattern=r"^nb[0-9a-z]{1,13}$")
    vxlan: str = Field(pattern=r"^nx[0-9a-z]{1,13}$")
    vni: int = Field(ge=1, le=2**24 - 1)
    ipam: Ipam
    prefix: str | None = None
    """The network's /64 (manual and auto)."""
    gateway: str | None = None
    """The host's address in the /64 (its `::1`); set with `prefix`."""
    mac: str = Field(pattern=MAC_PATTERN)
    """The bridge's MAC, the same on every host."""
    mtu: int = Field(default=NETWORK_MTU, ge=1280, le=9000)
    group: str | None = None
    """Flooding by multicast: the network's IPv6 group. None: unicast to `remotes`."""
    remotes: list[str] = Field(default_factory=list)
    """The underlay addresses of the other hosts that have a VM in the network: the only
    ones the host takes the network's VXLAN from, and, without a group, those it floods
    to (head-end replication)."""
    fdb: list[FdbEntry] = Field(default_factory=list)
    """The NICs of the network on other hosts: the VXLAN device learns nothing from what
    arrives (a forged frame could teach it anything), it is told."""
    rules: list[FirewallRule] = Field(default_factory=list)
    """The network's firewall rules, for each NIC in it."""


PROBE_PORT = 4791
"""The UDP port on which every agent answers its peers' probes, on its underlay address."""

CONSOLE_PORT = 4792
"""The TCP port on which every agent relays a VM's console to the control plane, on its
underlay address, for a console grant only (see `console_grant`)."""


class ConsoleKind(StrEnum):
    SERIAL = "serial"
    """The serial console: the guest's ttyS0, bytes both ways."""
    VNC = "vnc"
    """The graphical console: QEMU's VNC server (RFB), bytes both ways."""


class Peer(_Wire):
    """A host of the same location that this host watches (probes over the underlay)."""

    host: str
    """The peer's public host id."""
    address: str
    """Its underlay address."""


class Desired(_Wire):
    revision: int = Field(ge=0)
    """Grows with every change; the agent long-polls for a revision past the one it has."""
    network: HostNetwork
    networks: list[Network] = Field(default_factory=list)
    """The project networks this host's VMs have NICs in."""
    vms: list[VmSpec]
    peers: list[Peer] = Field(default_factory=list)
    """The hosts this host watches; each host is watched by several others."""
    fence_seconds: float | None = Field(default=None, gt=0)
    """Self-fencing: after this long without reaching the control plane AND without
    reaching a majority of `peers`, the agent stops every VM it runs (and starts none
    until it reached the control plane again). Shorter than the control plane's wait
    before it declares the host dead. None (or no peers): never."""


# Observed state: what the agent sees, reported after each pass and with heartbeats.


CONSOLE_TAIL_BYTES = 16 * 1024


class VmState(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    PREPARING = "preparing"
    """Its image, disk or seed are being made."""
    ERROR = "error"


class VmObserved(_Wire):
    id: str
    state: VmState
    reboots: int = Field(ge=0, le=MAX_COUNT)
    """The reboot requests carried out (the desired `reboots` it has reached)."""
    detail: str = ""
    """Why, for `error`."""
    console: str | None = None
    """The serial console's last bytes (at most CONSOLE_TAIL_BYTES, as text), sent only
    when the console grew since the last report; None: unchanged."""


class PeerSeen(_Wire):
    host: str
    silent_seconds: float = Field(ge=0, allow_inf_nan=False)
    """Since the peer last answered a probe (since the agent began watching it, if it
    never did)."""


class Status(_Wire):
    revision: int = Field(ge=0, le=MAX_COUNT)
    """The desired revision this describes the host converged to."""
    vms: list[VmObserved]
    removed: list[str] = Field(default_factory=list)
    """What the agent found that no desired state named, and removed (e.g. `tap ntx`)."""
    peers: list[PeerSeen] = Field(default_factory=list)
    """What the agent sees of the peers it watches."""
    fenced: bool = False
    """Whether the agent fenced itself (stopped its VMs) since it last reached the
    control plane."""

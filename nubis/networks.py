"""Project networks: making one (a VNI and, with IPAM, a /64 of its location), finding
it, deleting it, and the names and addresses every host gives its links.

A network is a VXLAN segment across the hosts that have a VM in it, bridged on each of
them to its VMs' taps. Those hosts learn about it from their desired state; this
module only keeps the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import delete as delete_rows
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from nubis import revisions
from nubis.addresses import stable_mac
from nubis.db.refs import ref_clause
from nubis.errors import Conflict, NotFound
from nubis.ids import Kind, format_id
from nubis.ipam import subnets, vnis
from nubis.models import Flooding, Host, Location, Network, Nic, Subnet, Vm, VniHold
from nubis.names import check_name
from nubis.protocol import Ipam

NAME_DIGITS = 12
"""How many of a network id's last (random) digits name its links: `nb` or `nx` and
these stay within Linux's 15 characters."""


@dataclass(frozen=True)
class Placed:
    """A network with where it is: its location and, with IPAM, its /64."""

    network: Network
    location: Location
    prefix: str | None

    @property
    def gateway(self) -> str | None:
        return subnets.gateway(self.prefix) if self.prefix else None


def public_id(network_id: UUID) -> str:
    return format_id(Kind.NETWORK, network_id)


def bridge_name(network_id: UUID) -> str:
    return f"nb{public_id(network_id)[-NAME_DIGITS:]}"


def vxlan_name(network_id: UUID) -> str:
    return f"nx{public_id(network_id)[-NAME_DIGITS:]}"


def bridge_mac(network_id: UUID) -> str:
    """The bridge's MAC: the same on every host, so a VM's neighbour entry for its
    gateway holds wherever the VM runs."""
    return stable_mac(public_id(network_id), 0)


def group(vni: int) -> str:
    """The IPv6 multicast group a network floods to, when its location floods by multicast.

    Scope 5 (site-local, ff05::/16): a location's hosts are one site, and a group of
    that scope is routed among them but never past the site's border. `6e62` ("nb")
    keeps nubis's groups apart from others on the same underlay; the VNI's 24 bits fill
    the last two groups, so every network of a location has a group of its own.
    """
    if not 0 < vni <= vnis.MAX_VNI:
        raise ValueError(f"not a VNI: {vni}")
    return f"ff05::6e62:{vni >> 16:x}:{vni & 0xFFFF:x}"


def create(session: Session, project_id: UUID, location: Location, name: str, ipam: Ipam) -> Placed:
    """Make a network with a free VNI of its location, drawn at random, and, for
    `manual` and `auto`, the location's lowest free /64. Conflict (and nothing made) if
    the name is taken or the location has no VNI or /64 left."""
    check_name(name)
    clash = select(Network.id).where(Network.project_id == project_id, Network.name == name)
    if session.scalar(clash) is not None:
        raise Conflict(f"the project has a network named {name!r} already")
    # One allocation at a time per location: two networks made at once must not take
    # the same VNI or /64 (SQLite's writes are serial anyway).
    session.get_one(Location, location.id, with_for_update=True)
    vni = vnis.pick(_taken_vnis(session, location.id))
    number = None
    if ipam != Ipam.NONE:
        numbers = session.scalars(select(Subnet.number).where(Subnet.location_id == location.id))
        number = subnets.first_free(location.prefix, numbers)
    network = Network(
        project_id=project_id, location_id=location.id, name=name, ipam=ipam.value, vni=vni
    )
    session.add(network)
    session.flush()
    if number is None:
        return Placed(network, location, None)
    session.add(Subnet(location_id=location.id, number=number, network_id=network.id))
    session.flush()
    return Placed(network, location, subnets.subnet(location.prefix, number))


def find(session: Session, project_id: UUID, ref: str) -> Network:
    """The project's network `ref` names (a name or an id)."""
    found = session.scalars(
        select(Network).where(
            Network.project_id == project_id,
            ref_clause(Kind.NETWORK, Network.id, Network.name, ref),
        )
    ).one_or_none()
    if found is None:
        raise NotFound(f"no network {ref!r}")
    return found


def placed(session: Session, network: Network) -> Placed:
    """`network` with its location and /64."""
    location = session.get_one(Location, network.location_id)
    number = session.scalar(select(Subnet.number).where(Subnet.network_id == network.id))
    prefix = None if number is None else subnets.subnet(location.prefix, number)
    return Placed(network, location, prefix)


def _taken_vnis(session: Session, location_id: UUID) -> set[int]:
    """The location's VNIs that a new network may not have: its networks', and those
    still held for a host that may bridge them (the holds that ended are let go)."""
    released = exists().where(
        Host.id == VniHold.host_id, Host.observed_revision >= VniHold.revision
    )
    session.execute(delete_rows(VniHold).where(VniHold.location_id == location_id, released))
    taken = set(session.scalars(select(Network.vni).where(Network.location_id == location_id)))
    return taken | set(
        session.scalars(select(VniHold.vni).where(VniHold.location_id == location_id))
    )


def _hold(session: Session, network: Network) -> None:
    """Keep the network's VNI from new networks until every host of its location that
    has yet to converge to its current desired state has done so: until then, it may
    still bridge the network's last taps (a NIC's row goes at once; its tap, once its
    host converged)."""
    behind = session.execute(
        select(Host.id, Host.desired_revision).where(
            Host.location_id == network.location_id,
            Host.observed_revision < Host.desired_revision,
        )
    )
    for host_id, revision in behind:
        session.add(
            VniHold(
                location_id=network.location_id, vni=network.vni, host_id=host_id, revision=revision
            )
        )


def delete(session: Session, network: Network) -> None:
    """Delete a network no NIC is in; its /64 and its rules go with it, its VNI is held
    while a host may still bridge it."""
    users = session.scalars(
        select(Vm.name)
        .join(Nic, Nic.vm_id == Vm.id)
        .where(Nic.network_id == network.id)
        .order_by(Vm.name)
        .distinct()
    ).all()
    if users:
        raise Conflict(
            f"network {network.name} has NICs of VMs {', '.join(users)}: remove them first"
        )
    # The foreign keys would cascade too; saying it keeps the ORM's view right.
    session.execute(delete_rows(Subnet).where(Subnet.network_id == network.id))
    _hold(session, network)
    session.delete(network)


def set_flooding(session: Session, location: Location, flooding: Flooding) -> bool:
    """Change how the location's networks flood; every host there is told. False if it
    floods that way already."""
    if location.flooding == flooding:
        return False
    location.flooding = flooding.value
    revisions.touch_location(session, location.id)
    return True

"""What a host should run (its desired state): its VM network, its VMs and the project
networks they have NICs in, with their remotes and firewall rules, and the peers it
watches, as the wire types the agent reads. A fixed number of queries, however many
VMs and networks there are."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from nubis import networks, peers
from nubis.ids import Kind, format_id
from nubis.ipam import host_subnets, subnets
from nubis.models import (
    ON_HOST,
    FirewallRule,
    Flooding,
    Health,
    Host,
    Image,
    Location,
    Network,
    Nic,
    Subnet,
    Vm,
)
from nubis.protocol import NETWORK_MTU, Desired, FdbEntry, HostNetwork, ImageRef, Ipam, VmSpec
from nubis.protocol import FirewallRule as WireRule
from nubis.protocol import Network as WireNetwork
from nubis.protocol import Nic as WireNic
from nubis.vms import BRIDGE, nics_of


def for_host(session: Session, host: Host, *, fence_seconds: float) -> Desired:
    """What `host` should run: its VM network, every VM on it not being deleted or moved
    away, the project networks those VMs have NICs in, and its peers. A dead host runs
    nothing: should it come back, it stops whatever it ran. A fixed number of queries,
    however many VMs and networks there are."""
    prefix = host_subnets.of(session, host)
    rows = (
        []
        if host.health == Health.DEAD
        else session.execute(
            select(Vm, Image)
            .join(Image, Image.id == Vm.image_id)
            .where(Vm.host_id == host.id, Vm.label.in_(ON_HOST))
            .order_by(Vm.id)
        ).all()
    )
    vm_ids = [vm.id for vm, _ in rows]
    nics = nics_of(session, vm_ids)
    network_ids = sorted({n.network_id for ns in nics.values() for n in ns if n.network_id})
    found = _networks(session, host, network_ids)
    rules = _rules(session, network_ids, vm_ids)
    watched = peers.peers_of(session, host)
    return Desired(
        revision=host.desired_revision,
        network=HostNetwork(bridge=BRIDGE, prefix=prefix, gateway=subnets.gateway(prefix)),
        networks=[
            wire.model_copy(update={"rules": rules.get(key, [])}) for key, wire in found.items()
        ],
        vms=[
            _spec(vm, image, nics.get(vm.id, []), found, rules.get(vm.id, [])) for vm, image in rows
        ],
        peers=watched,
        fence_seconds=fence_seconds if watched else None,
    )


def _networks(session: Session, host: Host, network_ids: list[UUID]) -> dict[UUID, WireNetwork]:
    """Each network as `host` should have it (without its rules), by key."""
    if not network_ids:
        return {}
    location = session.get_one(Location, host.location_id)
    # The NICs of the other hosts (not being deleted or moving away) in these networks:
    # where their MACs are, and which hosts the network's VXLAN comes from.
    remotes: dict[UUID, set[str]] = {}
    fdb: dict[UUID, list[FdbEntry]] = {}
    for network_id, mac, address in session.execute(
        select(Nic.network_id, Nic.mac, Host.underlay_address)
        .join(Vm, Vm.id == Nic.vm_id)
        .join(Host, Host.id == Vm.host_id)
        .where(
            Nic.network_id.in_(network_ids),
            Vm.host_id != host.id,
            Vm.label.in_(ON_HOST),
        )
        .order_by(Nic.mac)
    ):
        if network_id is not None:
            remotes.setdefault(network_id, set()).add(address)
            fdb.setdefault(network_id, []).append(FdbEntry(mac=mac, remote=address))
    found: dict[UUID, WireNetwork] = {}
    for network, number in session.execute(
        select(Network, Subnet.number)
        .outerjoin(Subnet, Subnet.network_id == Network.id)
        .where(Network.id.in_(network_ids))
        .order_by(Network.id)
    ):
        prefix = None if number is None else subnets.subnet(location.prefix, number)
        found[network.id] = WireNetwork(
            id=networks.public_id(network.id),
            bridge=networks.bridge_name(network.id),
            vxlan=networks.vxlan_name(network.id),
            vni=network.vni,
            ipam=Ipam(network.ipam),
            prefix=prefix,
            gateway=subnets.gateway(prefix) if prefix else None,
            mac=networks.bridge_mac(network.id),
            mtu=NETWORK_MTU,
            group=networks.group(network.vni) if location.flooding == Flooding.MULTICAST else None,
            remotes=sorted(remotes.get(network.id, set())),
            fdb=fdb.get(network.id, []),
        )
    return found


def _rules(
    session: Session, network_ids: list[UUID], vm_ids: list[UUID]
) -> dict[UUID, list[WireRule]]:
    """The firewall rules of the networks and of the VMs, by network or VM key."""
    if not network_ids and not vm_ids:
        return {}
    found: dict[UUID, list[WireRule]] = {}
    for rule in session.scalars(
        select(FirewallRule)
        .where(or_(FirewallRule.network_id.in_(network_ids), FirewallRule.vm_id.in_(vm_ids)))
        .order_by(FirewallRule.id)
    ):
        owner = rule.network_id or rule.vm_id
        assert owner is not None
        found.setdefault(owner, []).append(
            WireRule(
                protocol=rule.protocol,
                port_min=rule.port_min,
                port_max=rule.port_max,
                source=rule.source,
            )
        )
    return found


def _wire_nic(nic: Nic, found: dict[UUID, WireNetwork]) -> WireNic:
    if nic.network_id is None:
        return WireNic(tap=nic.tap, number=nic.number, mac=nic.mac, address=nic.address)
    network = found[nic.network_id]
    return WireNic(
        tap=nic.tap,
        number=nic.number,
        mac=nic.mac,
        address=nic.address,
        network=network.id,
        ipam=network.ipam,
        mtu=network.mtu,
    )


def _spec(
    vm: Vm,
    image: Image,
    nics: list[Nic],
    found: dict[UUID, WireNetwork],
    rules: list[WireRule],
) -> VmSpec:
    assert image.sha256 and image.size_bytes and image.virtual_size_bytes
    return VmSpec(
        id=format_id(Kind.VM, vm.id),
        hostname=vm.name,
        cores=vm.cores,
        memory_bytes=vm.memory_bytes,
        disk_bytes=vm.disk_bytes,
        image=ImageRef(
            id=format_id(Kind.IMAGE, image.id),
            sha256=image.sha256,
            size_bytes=image.size_bytes,
            virtual_size_bytes=image.virtual_size_bytes,
        ),
        running=vm.running,
        reboots=vm.reboots,
        nics=[_wire_nic(n, found) for n in nics],
        ssh_keys=list(vm.ssh_keys),
        user_data=vm.user_data,
        rules=rules,
    )

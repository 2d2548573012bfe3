"""VMs in the control plane: making one (placed in the same transaction), its NICs in
project networks, and what its host's agent saw (observed state). What each host
should run is `desired.py`."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from nubis import networks, revisions
from nubis.addresses import eui64_address, stable_mac
from nubis.db.refs import ref_clause
from nubis.engine import strand
from nubis.errors import Conflict, InvalidInput, NotFound
from nubis.ids import Kind, format_id, new_id
from nubis.ipam import host_subnets
from nubis.models import (
    GONE,
    LEAVING,
    Host,
    Image,
    ImageState,
    Network,
    Nic,
    Vm,
    VmEvent,
    VmLabel,
)
from nubis.names import check_name
from nubis.protocol import Status
from nubis.scheduling.allocator import place
from nubis.scheduling.stages import Request
from nubis.scheduling.weigher import Policy
from nubis.units import format_size

BRIDGE = "nbvm"
"""The bridge of every host's own VM network."""
MOST_NIC_NUMBER = 15
"""A VM's NICs are numbered 0 (the host network's) to this (the wire's limit)."""
MIN_MEMORY_BYTES = 128 * 2**20
"""The least memory a VM boots with (firmware, kernel and initramfs)."""
MAX_MEMORY_BYTES = 4 * 2**40
MAX_DISK_BYTES = 64 * 2**40


@dataclass(frozen=True)
class Order:
    """A VM as asked for, checked."""

    project_id: UUID
    name: str
    location_id: UUID
    image: Image
    cores: int
    memory_bytes: int
    disk_bytes: int
    ssh_keys: list[str]
    user_data: str | None
    group: str | None
    networks: list[Network] = field(default_factory=list)
    """Project networks to give the VM a NIC in (NICs 1, 2, … in this order)."""
    ha: bool = True
    """Recreate it on another host when its host dies."""


def tap_name(vm_id: UUID, number: int) -> str:
    """`nt` and the VM id's last (random) digits: unique, and within 15 characters."""
    return f"nt{format_id(Kind.VM, vm_id)[-11:]}{number}"


def _check_networks(order: Order) -> None:
    """Each network is the project's, in the VM's location, and named once."""
    seen: set[UUID] = set()
    for network in order.networks:
        if network.project_id != order.project_id:
            raise NotFound(f"no network {network.name!r}")
        if network.location_id != order.location_id:
            raise InvalidInput(
                f"network {network.name} is in another location than the VM",
                errors={"networks": f"{network.name} is in another location"},
            )
        if network.id in seen:
            raise InvalidInput(
                f"network {network.name} is named twice: a VM has one NIC per network",
                errors={"networks": f"{network.name} is named twice"},
            )
        seen.add(network.id)
    if len(order.networks) > MOST_NIC_NUMBER:
        raise InvalidInput(
            f"a VM has at most {MOST_NIC_NUMBER} project network NICs",
            errors={"networks": f"at most {MOST_NIC_NUMBER}"},
        )


def _check_sizes(order: Order) -> None:
    """Memory and disk within what a VM takes (the disk may be the image's size)."""
    bounds = {
        "memory": (order.memory_bytes, MIN_MEMORY_BYTES, MAX_MEMORY_BYTES),
        "disk": (order.disk_bytes, 1, MAX_DISK_BYTES),
    }
    for field_name, (value, least, most) in bounds.items():
        if value < least:
            reason = f"at least {format_size(least)}"
        elif value > most:
            reason = f"at most {format_size(most)}"
        else:
            continue
        raise InvalidInput(
            f"a VM's {field_name} is {reason} ({value} bytes asked for)",
            errors={field_name: reason},
        )


def make(session: Session, order: Order, policy: Policy) -> Vm:
    """Make the VM (flushed, with its NICs) and reserve its place; NoCapacity if nothing
    fits (nothing is kept). Its prog is the caller's to start (`VmNexus.assemble`)."""
    check_name(order.name)
    _check_networks(order)
    if order.image.state != ImageState.ACTIVE:
        raise Conflict(f"image {order.image.name} is {order.image.state}, not active")
    virtual = order.image.virtual_size_bytes or 0
    if order.disk_bytes < virtual:
        raise InvalidInput(
            f"the disk ({order.disk_bytes} bytes) is smaller than the image ({virtual} bytes)",
            errors={"disk": f"at least {virtual} bytes"},
        )
    _check_sizes(order)
    clash = select(Vm.id).where(Vm.project_id == order.project_id, Vm.name == order.name)
    if session.scalar(clash) is not None:
        raise Conflict(f"the project has a VM named {order.name!r} already")
    vm = Vm(
        id=new_id(),
        project_id=order.project_id,
        name=order.name,
        location_id=order.location_id,
        image_id=order.image.id,
        cores=order.cores,
        memory_bytes=order.memory_bytes,
        disk_bytes=order.disk_bytes,
        ssh_keys=order.ssh_keys,
        user_data=order.user_data,
        affinity_group=order.group,
        ha=order.ha,
        label=VmLabel.WAIT_UP,
    )
    session.add(vm)
    session.flush()
    placement = place(session, _request(vm), format_id(Kind.VM, vm.id), policy)
    host = session.get_one(Host, placement.host_id)
    vm.host_id = host.id
    mac = stable_mac(format_id(Kind.VM, vm.id), 0)
    address = eui64_address(host_subnets.of(session, host), mac)
    session.add(Nic(vm_id=vm.id, number=0, mac=mac, tap=tap_name(vm.id, 0), address=address))
    for number, network in enumerate(order.networks, start=1):
        session.add(_nic(session, vm, network, number))
    session.flush()
    touch_networks(session, [n.id for n in order.networks], also=host.id)
    note(session, vm.id, "placed", f"created on host {host.name}")
    return vm


def _request(vm: Vm) -> Request:
    """What placing `vm` asks for: its size, location and anti-affinity group."""
    return Request(
        location_id=vm.location_id,
        cores=vm.cores,
        memory_bytes=vm.memory_bytes,
        disk_bytes=vm.disk_bytes,
        group=f"{vm.project_id}/{vm.affinity_group}" if vm.affinity_group else None,
    )


def place_again(session: Session, vm: Vm, policy: Policy = Policy.SPREAD) -> Host:
    """Place a VM (locked) that has no host, as a new VM would be (its old host is
    excluded: it is dead or draining), keeping its id, name, MACs, keys, user-data and
    project network addresses; NIC 0 takes the new host's /64. NoCapacity if nothing
    fits (nothing is kept)."""
    placement = place(session, _request(vm), format_id(Kind.VM, vm.id), policy)
    host = session.get_one(Host, placement.host_id)
    vm.host_id = host.id
    nic = session.scalars(select(Nic).where(Nic.vm_id == vm.id, Nic.number == 0)).one()
    nic.address = eui64_address(host_subnets.of(session, host), nic.mac)
    # A new machine from the image: nothing of the old one's reported state holds.
    vm.observed, vm.observed_detail = None, ""
    vm.reboots = vm.observed_reboots = 0
    vm.waiting = None
    touch_networks(session, network_ids_of(session, vm.id), also=host.id)
    return host


def note(session: Session, vm_id: UUID, kind: str, detail: str) -> None:
    """Write to the VM's event log."""
    session.add(VmEvent(vm_id=vm_id, kind=kind, detail=detail))


def _nic(session: Session, vm: Vm, network: Network, number: int) -> Nic:
    """The VM's NIC number `number`, in `network`: with IPAM, at the EUI-64 address of
    its MAC in the network's /64, the one the guest takes by SLAAC."""
    mac = stable_mac(format_id(Kind.VM, vm.id), number)
    prefix = networks.placed(session, network).prefix
    return Nic(
        vm_id=vm.id,
        number=number,
        mac=mac,
        tap=tap_name(vm.id, number),
        address=eui64_address(prefix, mac) if prefix else None,
        network_id=network.id,
    )


def _changeable(vm: Vm, network: Network) -> None:
    if vm.label in GONE:
        raise Conflict(f"VM {vm.name} is being deleted")
    if network.project_id != vm.project_id:
        raise NotFound(f"no network {network.name!r}")


def add_nic(session: Session, vm: Vm, network: Network) -> Nic:
    """Give a VM (locked) a NIC in `network`, with the lowest free number; its host
    adds it to the running VM."""
    _changeable(vm, network)
    if network.location_id != vm.location_id:
        raise InvalidInput(
            f"network {network.name} is in another location than VM {vm.name}",
            errors={"network": "in another location"},
        )
    nics = session.scalars(select(Nic).where(Nic.vm_id == vm.id)).all()
    if any(nic.network_id == network.id for nic in nics):
        raise Conflict(f"VM {vm.name} has a NIC in network {network.name} already")
    used = {nic.number for nic in nics}
    free = [n for n in range(1, MOST_NIC_NUMBER + 1) if n not in used]
    if not free:
        raise Conflict(f"VM {vm.name} has {MOST_NIC_NUMBER} project network NICs, the most it may")
    nic = _nic(session, vm, network, free[0])
    session.add(nic)
    session.flush()
    touch_networks(session, [network.id], also=vm.host_id)
    return nic


def remove_nic(session: Session, vm: Vm, network: Network) -> None:
    """Take a VM's (locked) NIC out of `network`; its host removes it from the VM."""
    _changeable(vm, network)
    nic = session.scalars(
        select(Nic).where(Nic.vm_id == vm.id, Nic.network_id == network.id)
    ).one_or_none()
    if nic is None:
        raise Conflict(f"VM {vm.name} has no NIC in network {network.name}")
    touch_networks(session, [network.id], also=vm.host_id)
    session.delete(nic)


def find(session: Session, project_id: UUID, ref: str, *, lock: bool = False) -> Vm:
    query = select(Vm).where(Vm.project_id == project_id, ref_clause(Kind.VM, Vm.id, Vm.name, ref))
    vm = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if vm is None:
        raise NotFound(f"no VM {ref!r}")
    return vm


def touch_networks(
    session: Session, network_ids: Collection[UUID], *, also: UUID | None = None
) -> None:
    """Touch every host with a VM in one of `network_ids` (their bridges and flooding
    lists change with who is in a network), and `also`."""
    found: set[UUID] = set()
    if network_ids:
        found |= {
            host_id
            for host_id in session.scalars(
                select(Vm.host_id)
                .join(Nic, Nic.vm_id == Vm.id)
                .where(Nic.network_id.in_(network_ids), Vm.host_id.is_not(None))
                .distinct()
            )
            if host_id is not None
        }
    if also is not None:
        found.add(also)
    for host_id in sorted(found):  # one order: two transactions never wait on each other
        revisions.touch(session, host_id)


def network_ids_of(session: Session, vm_id: UUID) -> list[UUID]:
    """The project networks the VM has NICs in."""
    query = select(Nic.network_id).where(Nic.vm_id == vm_id, Nic.network_id.is_not(None))
    return [n for n in session.scalars(query) if n is not None]


def nics_of(session: Session, vm_ids: Sequence[UUID]) -> dict[UUID, list[Nic]]:
    """The NICs of each of `vm_ids`, in order, in one query."""
    found: dict[UUID, list[Nic]] = {}
    for nic in session.scalars(select(Nic).where(Nic.vm_id.in_(vm_ids)).order_by(Nic.number)):
        found.setdefault(nic.vm_id, []).append(nic)
    return found


def network_names(session: Session, nics: dict[UUID, list[Nic]]) -> dict[UUID, str]:
    """The name of each network the NICs are in, in one query."""
    ids = {n.network_id for listed in nics.values() for n in listed if n.network_id}
    if not ids:
        return {}
    query = select(Network.id, Network.name).where(Network.id.in_(ids))
    return {key: name for key, name in session.execute(query)}


def observe(session: Session, host: Host, status: Status) -> None:
    """Take in what the agent saw; wake the prog of every VM whose state changed."""
    host.observed_revision = max(host.observed_revision, status.revision)
    seen = {report.id: report for report in status.vms}
    for vm in session.scalars(select(Vm).where(Vm.host_id == host.id)):
        report = seen.get(format_id(Kind.VM, vm.id))
        state = report.state.value if report else None
        reboots = report.reboots if report else vm.observed_reboots
        detail = report.detail if report else ""
        changed = (state, reboots, detail) != (vm.observed, vm.observed_reboots, vm.observed_detail)
        vm.observed, vm.observed_reboots, vm.observed_detail = state, reboots, detail
        if report is not None and report.console is not None:
            vm.console = report.console
        waits = vm.label in (VmLabel.WAIT_GONE, VmLabel.WAIT_LEFT)
        if (changed or waits) and vm.strand_id is not None:
            strand.incr(session, vm.strand_id, "observed")


def display_state(vm: Vm) -> str:
    """The one word people see."""
    if vm.label in GONE:
        return "deleting"
    if vm.label == VmLabel.STRANDED:
        return "stopped"
    if vm.label == VmLabel.EVACUATE:
        return "waiting for capacity" if vm.waiting else "moving"
    if vm.label in LEAVING:
        return "moving"
    if vm.observed is None or vm.observed == "preparing":
        return "creating" if vm.label == VmLabel.WAIT_UP else "starting"
    if vm.observed == "error":
        return "failed"
    if vm.running and vm.reboots > vm.observed_reboots:
        return "rebooting"
    if vm.running:
        return "running" if vm.observed == "running" else "starting"
    return "stopped" if vm.observed == "stopped" else "stopping"

"""VMs in the control plane: making one (placed in the same transaction), what each
host should run (its desired state), and what its agent saw (observed state)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from nubis import hosts
from nubis.agent.net.addresses import eui64_address, stable_mac
from nubis.engine import strand
from nubis.errors import Conflict, InvalidInput, NotFound
from nubis.ids import Kind, format_id, new_id
from nubis.ipam import subnets
from nubis.models import Host, Image, ImageState, Location, Nic, Vm
from nubis.names import check_name, ref_clause
from nubis.protocol import Desired, HostNetwork, ImageRef, Status, VmSpec
from nubis.protocol import Nic as WireNic
from nubis.scheduling.allocator import place
from nubis.scheduling.stages import Request
from nubis.scheduling.weigher import Policy

GONE_LABELS = frozenset({"destroy", "wait_gone"})
"""The labels of a VM being deleted: it is no longer in its host's desired state."""
BRIDGE = "nbvm"
"""The bridge of every host's own VM network."""


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


def tap_name(vm_id: UUID, number: int) -> str:
    """`nt` and the VM id's last (random) digits: unique, and within 15 characters."""
    return f"nt{format_id(Kind.VM, vm_id)[-11:]}{number}"


def create(session: Session, order: Order, policy: Policy) -> Vm:
    """Make the VM and reserve its place; NoCapacity if nothing fits (nothing is kept)."""
    check_name(order.name)
    if order.image.state != ImageState.ACTIVE:
        raise Conflict(f"image {order.image.name} is {order.image.state}, not active")
    virtual = order.image.virtual_size_bytes or 0
    if order.disk_bytes < virtual:
        raise InvalidInput(
            f"the disk ({order.disk_bytes} bytes) is smaller than the image ({virtual} bytes)",
            errors={"disk": f"at least {virtual} bytes"},
        )
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
        label="wait_up",
    )
    session.add(vm)
    session.flush()
    request = Request(
        location_id=order.location_id,
        cores=order.cores,
        memory_bytes=order.memory_bytes,
        disk_bytes=order.disk_bytes,
        group=f"{order.project_id}/{order.group}" if order.group else None,
    )
    placement = place(session, request, format_id(Kind.VM, vm.id), policy)
    host = session.get_one(Host, placement.host_id)
    vm.host_id = host.id
    mac = stable_mac(format_id(Kind.VM, vm.id), 0)
    address = eui64_address(hosts.vm_subnet(session, host), mac)
    session.add(Nic(vm_id=vm.id, number=0, mac=mac, tap=tap_name(vm.id, 0), address=address))
    from nubis.progs.vm import VmNexus  # noqa: PLC0415 (the prog imports this module)

    vm.strand_id = strand.start(session, VmNexus, {"vm": str(vm.id)})
    touch(session, host.id)
    return vm


def find(session: Session, project_id: UUID, ref: str, *, lock: bool = False) -> Vm:
    query = select(Vm).where(Vm.project_id == project_id, ref_clause(Kind.VM, Vm.id, Vm.name, ref))
    vm = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if vm is None:
        raise NotFound(f"no VM {ref!r}")
    return vm


def location_for(session: Session, ref: str | None) -> Location:
    """The location `ref` names; without one, the only location there is."""
    if ref is not None:
        return hosts.location(session, ref)
    found = session.scalars(select(Location).limit(2)).all()
    if len(found) != 1:
        raise InvalidInput(
            "say which location the VM goes to" if found else "there is no location yet",
            errors={"location": "required"},
        )
    return found[0]


def touch(session: Session, host_id: UUID) -> int:
    """Note that what `host_id` should run changed; its new desired revision."""
    host = session.get_one(Host, host_id, with_for_update=True)
    host.desired_revision += 1
    return host.desired_revision


def nics_of(session: Session, vm_ids: Sequence[UUID]) -> dict[UUID, list[Nic]]:
    """The NICs of each of `vm_ids`, in order, in one query."""
    found: dict[UUID, list[Nic]] = {}
    for nic in session.scalars(select(Nic).where(Nic.vm_id.in_(vm_ids)).order_by(Nic.number)):
        found.setdefault(nic.vm_id, []).append(nic)
    return found


def desired(session: Session, host: Host) -> Desired:
    """What `host` should run: its VM network and every VM on it not being deleted."""
    prefix = hosts.vm_subnet(session, host)
    rows = session.execute(
        select(Vm, Image)
        .join(Image, Image.id == Vm.image_id)
        .where(Vm.host_id == host.id, Vm.label.not_in(GONE_LABELS))
        .order_by(Vm.id)
    ).all()
    nics = nics_of(session, [vm.id for vm, _ in rows])
    return Desired(
        revision=host.desired_revision,
        network=HostNetwork(bridge=BRIDGE, prefix=prefix, gateway=subnets.gateway(prefix)),
        vms=[_spec(vm, image, nics.get(vm.id, [])) for vm, image in rows],
    )


def _spec(vm: Vm, image: Image, nics: list[Nic]) -> VmSpec:
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
        nics=[WireNic(tap=n.tap, number=n.number, mac=n.mac, address=n.address) for n in nics],
        ssh_keys=list(vm.ssh_keys),
        user_data=vm.user_data,
    )


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
        if (changed or vm.label == "wait_gone") and vm.strand_id is not None:
            strand.incr(session, vm.strand_id, "observed")


def display_state(vm: Vm) -> str:
    """The one word people see."""
    if vm.label in GONE_LABELS:
        return "deleting"
    if vm.observed is None or vm.observed == "preparing":
        return "creating" if vm.label == "wait_up" else "starting"
    if vm.observed == "error":
        return "failed"
    if vm.running and vm.reboots > vm.observed_reboots:
        return "rebooting"
    if vm.running:
        return "running" if vm.observed == "running" else "starting"
    return "stopped" if vm.observed == "stopped" else "stopping"

"""`/v1/projects/{project}/vms`: VMs. Creating one places it at once (a VM that cannot
be placed is refused, 409, and not made); the rest is the VM's prog's work, so these
routes answer 202 with the VM in its transitional state."""

from __future__ import annotations

from fastapi import APIRouter, status
from fastapi.responses import PlainTextResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from nubis import locations, networks, sshkey, vms
from nubis.api.deps import DatabaseDep, PrincipalDep, SettingsDep
from nubis.api.pagination import Cursor, Limit, Page, fetch_page
from nubis.api.schemas.network import NicAdd
from nubis.api.schemas.vm import VmCreate, VmEventOut, VmOut
from nubis.auth.authz import Action, project_access
from nubis.engine import strand
from nubis.errors import Conflict
from nubis.images import store
from nubis.models import GONE, Host, SshKey, Vm, VmEvent
from nubis.progs.vm import VmNexus
from nubis.scheduling.weigher import Policy
from nubis.units import parse_size

router = APIRouter(prefix="/v1/projects/{project}/vms", tags=["vms"])

ASKED = {"start": "starting", "stop": "stopping", "reboot": "rebooting", "destroy": "deleting"}
"""What a VM shows in the answer to each request that changes it."""


def _out(session: Session, vm: Vm, *, shown: str | None = None) -> VmOut:
    nics = vms.nics_of(session, [vm.id])
    host = session.get(Host, vm.host_id) if vm.host_id else None
    return VmOut.of(
        vm,
        nics.get(vm.id, []),
        vms.network_names(session, nics),
        host_name=host.name if host else None,
        shown=shown,
    )


@router.get("")
def list_vms(
    project: str,
    db: DatabaseDep,
    principal: PrincipalDep,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[VmOut]:
    with db.reading() as session:
        access = project_access(session, principal, project, Action.READ)
        query = (
            select(Vm, Host.name)
            .outerjoin(Host, Host.id == Vm.host_id)
            .where(Vm.project_id == access.project.id)
        )
        rows, next_cursor = fetch_page(
            session, query, Vm.id, cursor, limit, key_of=lambda r: r[0].id
        )
        nics = vms.nics_of(session, [vm.id for vm, _ in rows])
        names = vms.network_names(session, nics)
        return Page(
            items=[VmOut.of(vm, nics.get(vm.id, []), names, host_name=host) for vm, host in rows],
            next_cursor=next_cursor,
        )


@router.post("", status_code=status.HTTP_202_ACCEPTED)
def create_vm(
    project: str, body: VmCreate, db: DatabaseDep, settings: SettingsDep, principal: PrincipalDep
) -> VmOut:
    """Create a VM from an image; it is placed now and starts on its host (`creating`)."""
    keys = [sshkey.parse(line).line for line in body.ssh_keys or []]
    memory = parse_size(body.memory)
    with db.transaction() as session:
        access = project_access(session, principal, project, Action.WRITE)
        image = store.find(session, access.project.id, body.image)
        if body.ssh_keys is None:
            keys = list(
                session.scalars(
                    select(SshKey.public_key)
                    .where(SshKey.project_id == access.project.id)
                    .order_by(SshKey.id)
                )
            )
        order = vms.Order(
            project_id=access.project.id,
            name=body.name,
            location_id=locations.of_request(session, body.location).id,
            image=image,
            cores=body.cores,
            memory_bytes=memory,
            disk_bytes=parse_size(body.disk) if body.disk else image.virtual_size_bytes or 0,
            ssh_keys=keys,
            user_data=body.user_data,
            group=body.group,
            networks=[networks.find(session, access.project.id, ref) for ref in body.networks],
            ha=body.ha,
        )
        vm = VmNexus.assemble(session, order, Policy(settings.placement_policy))
        return _out(session, vm)


@router.get("/{vm}")
def read_vm(project: str, vm: str, db: DatabaseDep, principal: PrincipalDep) -> VmOut:
    with db.reading() as session:
        access = project_access(session, principal, project, Action.READ)
        return _out(session, vms.find(session, access.project.id, vm))


@router.get("/{vm}/events")
def list_vm_events(
    project: str,
    vm: str,
    *,
    db: DatabaseDep,
    principal: PrincipalDep,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[VmEventOut]:
    """The VM's event log, oldest first: where it was placed, its moves to other hosts
    (its host died or was evacuated), its waits for capacity."""
    with db.reading() as session:
        access = project_access(session, principal, project, Action.READ)
        found = vms.find(session, access.project.id, vm)
        rows, next_cursor = fetch_page(
            session,
            select(VmEvent).where(VmEvent.vm_id == found.id),
            VmEvent.id,
            cursor,
            limit,
            key_of=lambda r: r[0].id,
        )
        return Page(items=[VmEventOut.of(e) for (e,) in rows], next_cursor=next_cursor)


@router.post("/{vm}/nics", status_code=status.HTTP_202_ACCEPTED)
def add_nic(project: str, vm: str, body: NicAdd, db: DatabaseDep, principal: PrincipalDep) -> VmOut:
    """Give the VM a NIC in a project network of its location; its host adds it, to the
    running VM too."""
    with db.transaction() as session:
        access = project_access(session, principal, project, Action.WRITE)
        found = vms.find(session, access.project.id, vm, lock=True)
        vms.add_nic(session, found, networks.find(session, access.project.id, body.network))
        return _out(session, found)


@router.delete("/{vm}/nics/{network}", status_code=status.HTTP_202_ACCEPTED)
def remove_nic(
    project: str, vm: str, network: str, db: DatabaseDep, principal: PrincipalDep
) -> VmOut:
    """Take the VM's NIC out of a project network (the host network's NIC stays)."""
    with db.transaction() as session:
        access = project_access(session, principal, project, Action.WRITE)
        found = vms.find(session, access.project.id, vm, lock=True)
        vms.remove_nic(session, found, networks.find(session, access.project.id, network))
        return _out(session, found)


@router.get("/{vm}/console", response_class=PlainTextResponse)
def read_console(project: str, vm: str, db: DatabaseDep, principal: PrincipalDep) -> str:
    """The last bytes (up to 16 KiB) of the VM's serial console, as its host last
    reported them; empty until it has. Read-only: nothing typed reaches the VM."""
    with db.reading() as session:
        access = project_access(session, principal, project, Action.READ)
        return vms.find(session, access.project.id, vm).console or ""


def _signal(db: DatabaseDep, principal: PrincipalDep, project: str, ref: str, name: str) -> VmOut:
    with db.transaction() as session:
        access = project_access(session, principal, project, Action.WRITE)
        vm = vms.find(session, access.project.id, ref, lock=True)
        if vm.label in GONE:
            raise Conflict(f"VM {vm.name} is being deleted")
        if name == "reboot" and not vm.running:
            raise Conflict(f"VM {vm.name} is stopped: start it instead of rebooting it")
        if vm.strand_id is None or not strand.incr(session, vm.strand_id, name):
            raise Conflict(f"VM {vm.name} takes no requests now")
        changes = name in ("reboot", "destroy") or vm.running == (name == "stop")
        return _out(session, vm, shown=ASKED[name] if changes else None)


@router.post("/{vm}/start", status_code=status.HTTP_202_ACCEPTED)
def start_vm(project: str, vm: str, db: DatabaseDep, principal: PrincipalDep) -> VmOut:
    return _signal(db, principal, project, vm, "start")


@router.post("/{vm}/stop", status_code=status.HTTP_202_ACCEPTED)
def stop_vm(project: str, vm: str, db: DatabaseDep, principal: PrincipalDep) -> VmOut:
    """ACPI power-off; the host forces it off if the guest has not stopped in time."""
    return _signal(db, principal, project, vm, "stop")


@router.post("/{vm}/reboot", status_code=status.HTTP_202_ACCEPTED)
def reboot_vm(project: str, vm: str, db: DatabaseDep, principal: PrincipalDep) -> VmOut:
    return _signal(db, principal, project, vm, "reboot")


@router.delete("/{vm}", status_code=status.HTTP_202_ACCEPTED)
def delete_vm(project: str, vm: str, db: DatabaseDep, principal: PrincipalDep) -> VmOut:
    """Delete the VM: it shows `deleting` at once, and is gone once its host removed it
    and what it held came back."""
    return _signal(db, principal, project, vm, "destroy")

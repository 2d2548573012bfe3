"""Moving a host's VMs to other hosts: at once when the host is confirmed dead (it has
fenced itself), or one by one, each after its host stopped it, when an operator
evacuates a host that lives. The VMs' progs do the placing (`nubis/progs/vm.py`).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from nubis import hosts, vms
from nubis.engine import strand
from nubis.ids import Kind, format_id
from nubis.models import GONE, ON_HOST, AllocationState, Host, Vm, VmLabel
from nubis.scheduling.allocator import release


def take_off(session: Session, host: Host) -> int:
    """Take every VM off a host (locked) that was just confirmed dead, in the
    transaction that marks it dead; how many. Each gives back what it held there, once,
    and its prog places it elsewhere; a `--no-ha` VM stays with the host, stopped. The
    host's desired state then names no VM, so if it comes back it runs nothing."""
    found = session.scalars(
        select(Vm)
        .where(Vm.host_id == host.id, Vm.label.not_in(GONE | {VmLabel.STRANDED}))
        .order_by(Vm.id)
        .with_for_update()
    ).all()
    nics = vms.nics_of(session, [vm.id for vm in found])
    in_networks = {n.network_id for listed in nics.values() for n in listed if n.network_id}
    for vm in found:
        release(session, format_id(Kind.VM, vm.id))
        if vm.ha:
            vm.host_id = None
            vms.note(session, vm.id, "host dead", f"host {host.name} died: recreating it elsewhere")
        else:
            vm.running = False
            stays = f"host {host.name} died; --no-ha: it stays stopped"
            vms.note(session, vm.id, "host dead", stays)
        if vm.strand_id is not None:
            strand.incr(session, vm.strand_id, "evacuate")
    # The hosts of its networks stop flooding to it; it gets its (empty) desired state.
    vms.touch_networks(session, in_networks, also=host.id)
    return len(found)


def evacuate(session: Session, host: Host) -> int:
    """An operator empties a host (locked) that lives: it takes no new VMs, and each of
    its VMs moves to another host once this one stopped it; how many move."""
    if host.allocation_state == AllocationState.ACCEPTING:
        hosts.set_allocation_state(session, host, AllocationState.DRAINING, "evacuated")
    moving = session.scalars(
        select(Vm).where(Vm.host_id == host.id, Vm.label.in_(ON_HOST)).order_by(Vm.id)
    ).all()
    for vm in moving:
        if vm.strand_id is not None:
            strand.incr(session, vm.strand_id, "leave")
        vms.note(session, vm.id, "evacuate", f"host {host.name} is evacuated: moving")
    hosts.record(
        session, host.id, "evacuate", f"evacuation asked by an operator: {len(moving)} VM(s) move"
    )
    return len(moving)

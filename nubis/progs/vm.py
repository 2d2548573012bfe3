"""A VM's life after it is placed: wait for its host to run it, carry out what its
owner asks (stop, start, reboot, delete), move to another host when its host dies or
is evacuated, and on delete give back all it held.

Routes only record intent (`running`, `reboots`) and signal; this prog tells the host
by raising its desired revision and learns what happened from the agent's reports
(the `observed` signal wakes it). The VM row's `label` is this prog's label: its labels
are named in `models.VmLabel`, and `models.ON_HOST` says which put a VM on its host.

Moving: when its host is confirmed dead, the host monitor has already given back
what the VM held there and cleared its host (`evacuation.take_off`) and signals
`evacuate`; the VM is placed again (`evacuate`), waiting visibly while nothing fits.
A `--no-ha` VM instead stays with its dead host, stopped (`stranded`), until its owner
starts it. An operator's evacuation signals `leave`: the host drops the VM from its
desired state, and only once the host reported that state (so it stopped the VM) is
the VM placed elsewhere: a VM never runs on two hosts.
"""

from __future__ import annotations

from typing import NoReturn
from uuid import UUID

from sqlalchemy import delete
from sqlalchemy.orm import Session

from nubis import hosts, revisions, vms
from nubis.engine import strand
from nubis.engine.prog import Prog, label
from nubis.errors import NoCapacity
from nubis.ids import Kind, format_id
from nubis.models import FirewallRule, Health, Host, Nic, Vm, VmLabel
from nubis.scheduling import waiting
from nubis.scheduling.allocator import release
from nubis.scheduling.weigher import Policy

IDLE_NAP_SECONDS = 3600.0
"""A settled VM waits for a signal; this is only a safety net."""
WAIT_NAP_SECONDS = 5.0
"""How often a VM waiting on its host looks again, if no report wakes it sooner."""
CAPACITY_NAP_SECONDS = 5.0
"""How often a VM that fits nowhere tries again; a host that joins or is undrained, a
deleted VM, and a dead host that comes back wake it sooner."""


class VmNexus(Prog):
    start_label = VmLabel.WAIT_UP

    @classmethod
    def assemble(cls, session: Session, order: vms.Order, policy: Policy) -> Vm:
        """Make a VM as `order` says, placed, with its prog started: what creating a VM
        is. NoCapacity if nothing fits (nothing is kept)."""
        vm = vms.make(session, order, policy)
        vm.strand_id = strand.start(session, cls, {"vm": str(vm.id)})
        return vm

    @property
    def vm(self) -> Vm:
        return self.session.get_one(Vm, UUID(self.frame["vm"]), with_for_update=True)

    def go(self, vm: Vm, to: VmLabel) -> NoReturn:
        vm.label = to
        self.hop(to)

    def _asked(self, vm: Vm) -> None:
        """Carry out what the owner asked since the last look; hop away to delete or to
        move."""
        if self.when("destroy"):
            self.go(vm, VmLabel.DESTROY)
        if self.when("evacuate"):
            self.decr("evacuate")
            self.go(vm, VmLabel.EVACUATE if vm.host_id is None else VmLabel.STRANDED)
        if self.when("leave"):
            self.decr("leave")
            self.go(vm, VmLabel.LEAVE)
        if self._wishes(vm) and vm.host_id is not None:
            revisions.touch(self.session, vm.host_id)

    def _wishes(self, vm: Vm) -> bool:
        """Record the owner's stop, start and reboot; whether anything changed."""
        changed = False
        if self.when("stop") and vm.running:
            vm.running, changed = False, True
        if self.when("start") and not vm.running:
            vm.running, changed = True, True
        if self.when("reboot") and vm.running:
            vm.reboots, changed = vm.reboots + 1, True
        for name in ("stop", "start", "reboot", "observed"):
            self.decr(name)
        return changed

    @label
    def wait_up(self) -> None:
        vm = self.vm
        self._asked(vm)
        if vm.observed in ("running", "stopped"):
            self.go(vm, VmLabel.SETTLED)
        self.nap(WAIT_NAP_SECONDS)

    @label
    def settled(self) -> None:
        vm = self.vm
        self._asked(vm)
        self.nap(IDLE_NAP_SECONDS)

    # --- moving ------------------------------------------------------------------------

    @label
    def evacuate(self) -> None:
        """Place the VM (it has no host) on a host that fits, or wait for one."""
        vm = self.vm
        if self.when("destroy"):
            self.go(vm, VmLabel.DESTROY)
        for name in ("evacuate", "leave", "capacity"):
            self.decr(name)
        self._wishes(vm)  # it has no host to tell yet
        try:
            host = vms.place_again(self.session, vm)
        except NoCapacity as refusal:
            if vm.waiting is None:
                vms.note(self.session, vm.id, "waiting", f"waiting for capacity: {refusal}")
            vm.waiting = str(refusal)
            self.nap(CAPACITY_NAP_SECONDS)
        vms.note(self.session, vm.id, "placed", f"recreated on host {host.name}")
        hosts.record(self.session, host.id, "vm placed", f"VM {vm.name} recreated here")
        self.go(vm, VmLabel.WAIT_UP)

    @label
    def stranded(self) -> None:
        """A `--no-ha` VM, stopped with its dead host: it moves only when started."""
        vm = self.vm
        if self.when("destroy"):
            self.go(vm, VmLabel.DESTROY)
        if self.when("start"):
            self.decr("start")
            vm.running, vm.host_id = True, None
            vms.note(self.session, vm.id, "started", "started again: placing it on a host")
            self.go(vm, VmLabel.EVACUATE)
        for name in ("stop", "reboot", "observed", "evacuate", "leave"):
            self.decr(name)
        self.nap(IDLE_NAP_SECONDS)

    @label
    def leave(self) -> None:
        """Its host (alive, being evacuated) stops running it: the VM's label takes it out
        of the host's desired state, and the host is told."""
        vm = self.vm
        if vm.host_id is None:
            self.go(vm, VmLabel.EVACUATE)
        vms.touch_networks(self.session, vms.network_ids_of(self.session, vm.id), also=vm.host_id)
        host = self.session.get_one(Host, vm.host_id)
        self.frame["left_at"] = host.desired_revision
        vms.note(self.session, vm.id, "leaving", f"host {host.name} stops it before it moves")
        hosts.record(self.session, host.id, "vm leaving", f"stopping VM {vm.name} to move it")
        self.go(vm, VmLabel.WAIT_LEFT)

    @label
    def wait_left(self) -> None:
        """Once its host reported a desired state without it (or died, and fenced), give
        back what it held there and place it elsewhere."""
        vm = self.vm
        self.decr("observed")
        if self.when("destroy"):
            self.go(vm, VmLabel.DESTROY)
        host = self.session.get(Host, vm.host_id) if vm.host_id else None
        dead = host is not None and host.health == Health.DEAD
        if host is not None and not dead and host.observed_revision < int(self.frame["left_at"]):
            self.nap(WAIT_NAP_SECONDS)
        if dead and not vm.ha:
            self.go(vm, VmLabel.STRANDED)  # the host monitor gave back what it held
        release(self.session, format_id(Kind.VM, vm.id))  # nothing if the monitor did
        if host is not None:
            vms.note(self.session, vm.id, "left", f"host {host.name} stopped it")
            hosts.record(self.session, host.id, "vm left", f"VM {vm.name} stopped here")
        vm.host_id = None
        self.go(vm, VmLabel.EVACUATE)

    # --- deleting ------------------------------------------------------------------------

    @label
    def destroy(self) -> None:
        vm = self.vm
        # Its host stops running it; the other hosts of its networks stop flooding to
        # its host (unless another VM there keeps it in) and may drop a network.
        vms.touch_networks(self.session, vms.network_ids_of(self.session, vm.id), also=vm.host_id)
        host = self.session.get(Host, vm.host_id) if vm.host_id else None
        self.frame["gone_at"] = host.desired_revision if host else 0
        self.go(vm, VmLabel.WAIT_GONE)

    @label
    def wait_gone(self) -> None:
        vm = self.vm
        self.decr("observed")
        if vm.host_id is not None:
            host = self.session.get_one(Host, vm.host_id)
            # A dead host has fenced itself and runs nothing the control plane knows of.
            behind = host.observed_revision < int(self.frame["gone_at"])
            if behind and host.health != Health.DEAD:
                self.nap(WAIT_NAP_SECONDS)
        release(self.session, format_id(Kind.VM, vm.id))
        in_networks = vms.network_ids_of(self.session, vm.id)
        self.session.execute(delete(Nic).where(Nic.vm_id == vm.id))
        self.session.execute(delete(FirewallRule).where(FirewallRule.vm_id == vm.id))
        vms.touch_networks(self.session, in_networks)
        waiting.wake(self.session, vm.location_id)
        self.session.delete(vm)
        self.exit("deleted")

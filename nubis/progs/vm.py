"""A VM's life after it is placed: wait for its host to run it, carry out what its
owner asks (stop, start, reboot, delete), and on delete give back all it held.

Routes only record intent (`running`, `reboots`) and signal; this prog tells the host
by raising its desired revision and learns what happened from the agent's reports
(the `observed` signal wakes it). The VM row's `label` is this prog's label.
"""

from __future__ import annotations

from typing import NoReturn
from uuid import UUID

from sqlalchemy import delete

from nubis import vms
from nubis.engine.prog import Prog, label
from nubis.ids import Kind, format_id
from nubis.models import FirewallRule, Host, Nic, Vm
from nubis.scheduling.allocator import release

IDLE_NAP_SECONDS = 3600.0
"""A settled VM waits for a signal; this is only a safety net."""
WAIT_NAP_SECONDS = 5.0
"""How often a VM waiting on its host looks again, if no report wakes it sooner."""


class VmNexus(Prog):
    start_label = "wait_up"

    @property
    def vm(self) -> Vm:
        return self.session.get_one(Vm, UUID(self.frame["vm"]), with_for_update=True)

    def go(self, vm: Vm, to: str) -> NoReturn:
        vm.label = to
        self.hop(to)

    def _asked(self, vm: Vm) -> None:
        """Carry out what the owner asked since the last look; hop away to delete."""
        if self.when("destroy"):
            self.go(vm, "destroy")
        changed = False
        if self.when("stop") and vm.running:
            vm.running, changed = False, True
        if self.when("start") and not vm.running:
            vm.running, changed = True, True
        if self.when("reboot") and vm.running:
            vm.reboots, changed = vm.reboots + 1, True
        for name in ("stop", "start", "reboot", "observed"):
            self.decr(name)
        if changed and vm.host_id is not None:
            vms.touch(self.session, vm.host_id)

    @label
    def wait_up(self) -> None:
        vm = self.vm
        self._asked(vm)
        if vm.observed in ("running", "stopped"):
            self.go(vm, "settled")
        self.nap(WAIT_NAP_SECONDS)

    @label
    def settled(self) -> None:
        vm = self.vm
        self._asked(vm)
        self.nap(IDLE_NAP_SECONDS)

    @label
    def destroy(self) -> None:
        vm = self.vm
        # Its host stops running it; the other hosts of its networks stop flooding to
        # its host (unless another VM there keeps it in) and may drop a network.
        vms.touch_networks(self.session, vms.network_ids_of(self.session, vm.id), also=vm.host_id)
        host = self.session.get(Host, vm.host_id) if vm.host_id else None
        self.frame["gone_at"] = host.desired_revision if host else 0
        self.go(vm, "wait_gone")

    @label
    def wait_gone(self) -> None:
        vm = self.vm
        self.decr("observed")
        if vm.host_id is not None:
            host = self.session.get_one(Host, vm.host_id)
            if host.observed_revision < int(self.frame["gone_at"]):
                self.nap(WAIT_NAP_SECONDS)
        release(self.session, format_id(Kind.VM, vm.id))
        in_networks = vms.network_ids_of(self.session, vm.id)
        self.session.execute(delete(Nic).where(Nic.vm_id == vm.id))
        self.session.execute(delete(FirewallRule).where(FirewallRule.vm_id == vm.id))
        vms.touch_networks(self.session, in_networks)
        self.session.delete(vm)
        self.exit("deleted")

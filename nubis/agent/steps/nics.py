"""The NICs step: a running VM's project NICs plugged in and unplugged as its spec has
them now (see `qemu/hotplug.py`).

QMP is asked only when the NICs changed since they were last seen in QEMU; after a
restart of the agent none are known, so the first pass asks. An unplug under way
(the guest must let go) brings the next pass soon.
"""

from __future__ import annotations

from nubis.agent.qemu import hotplug
from nubis.agent.steps.step import DONE, Outcome, Step, VmPass
from nubis.protocol import Nic, VmSpec


class Nics(Step):
    name = "nics"

    def __init__(self) -> None:
        self._synced: dict[str, list[Nic]] = {}
        """Each running VM's NICs as QEMU was last seen to have them."""

    def run(self, spec: VmSpec, vm: VmPass) -> Outcome:
        if vm.started:
            self._synced[spec.id] = spec.nics
            return DONE
        if self._synced.get(spec.id) == spec.nics:
            return DONE
        if hotplug.sync_nics(spec, vm.paths, vm.host.acceleration):
            return Outcome(soon=True)
        self._synced[spec.id] = spec.nics
        return DONE

    def forget(self, vm_id: str) -> None:
        self._synced.pop(vm_id, None)

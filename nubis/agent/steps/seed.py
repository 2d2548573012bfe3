"""The seed step: the VM's cloud-init NoCloud seed (see `agent/seed.py`), written once.

The guest reads it at each boot; what changes later (keys, user data) it learns from
the metadata service, which answers from the desired state of the moment.
"""

from __future__ import annotations

from nubis.agent.seed import write_seed
from nubis.agent.steps.step import DONE, Outcome, Step, VmPass
from nubis.protocol import VmSpec


class Seed(Step):
    name = "seed"

    def run(self, spec: VmSpec, vm: VmPass) -> Outcome:
        if not vm.paths.seed.exists():
            write_seed(spec, vm.paths.seed, vm.host.network_of)
        return DONE

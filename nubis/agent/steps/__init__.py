"""A VM's work on its host, as a list of named steps run in order (see `step.py`).

A new capability of the host for its VMs (a snapshot, an incoming migration, a VNC
console, metrics) is a new step in this list, not a change to the reconciler.

What is not here is the host's, done once a pass before any VM's steps: the networks,
with every VM's taps and the guard over them (one ruleset for all taps, see
`net/networks.py`), and the metadata service. What every VM reports whatever its steps
did, its console's tail and its reboots, is the reconciler's report.
"""

from __future__ import annotations

from nubis.agent.steps.disk import Disk
from nubis.agent.steps.image import Image
from nubis.agent.steps.nics import Nics
from nubis.agent.steps.qemu import Qemu
from nubis.agent.steps.seed import Seed
from nubis.agent.steps.step import Step


def vm_steps() -> list[Step]:
    """A VM's steps, in the order they run: each needs what those before it made."""
    return [Image(), Disk(), Seed(), Qemu(), Nics()]

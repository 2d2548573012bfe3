"""The interface of a VM's steps, and the loop that runs them in order.

A step is one piece of a VM's work on its host (its image, its disk, its QEMU ...):
it looks at what is there, does what is missing, and says how the VM is now. Like the
whole pass, it is idempotent: after a crash, a restart of the agent or a pass that
ended before it, a step finds what was done already and does only the rest.

The steps of a VM run in order, each in every pass. One that is not done yet (the
image is still coming) or that has nothing for the later ones (the VM is stopped) ends
the VM's pass there; one that fails ends it too, the VM reports `error` with the
failure, and the next pass runs every step again from the first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from nubis.agent.image_cache import ImageCache
from nubis.agent.net.metadata_answers import NetworkLookup, no_networks
from nubis.agent.qemu import process
from nubis.agent.qemu.paths import VmPaths
from nubis.protocol import VmSpec, VmState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Host:
    """This host as the steps see it: the same for every VM, every pass."""

    images: ImageCache
    acceleration: str
    sandbox: bool = True
    stop_timeout: float = process.STOP_TIMEOUT
    may_start: Callable[[], bool] = lambda: True
    """Asked right before a VM is started: a host that fenced itself starts none."""
    network_of: NetworkLookup = no_networks
    """A project network of this host's desired state, by id."""


@dataclass
class VmPass:
    """One VM in one pass: where its files are, and what a step found that a later one
    needs (made anew each pass, so nothing in it outlives the pass)."""

    host: Host
    paths: VmPaths
    base: Path | None = None
    """The cached image the VM's disk is made on, once the image step found it."""
    started: bool = False
    """QEMU was started in this pass: its NICs are those of the spec."""


@dataclass(frozen=True)
class Outcome:
    """What a step left a VM as."""

    state: VmState | None = None
    """The VM's state now; None: as the steps before it said."""
    go_on: bool = True
    """False: the later steps have nothing to do in this pass."""
    soon: bool = False
    """The VM is on its way (its image coming, powering off, a NIC being unplugged):
    the next pass should come soon rather than after a whole long poll."""


DONE = Outcome()


def waiting(state: VmState) -> Outcome:
    """The VM is on its way and the later steps must wait for it."""
    return Outcome(state, go_on=False, soon=True)


class Step(Protocol):
    """One piece of a VM's work; a new capability of the host is a new step."""

    name: str
    """How logs and tests call it; unique in the list."""

    def run(self, spec: VmSpec, vm: VmPass) -> Outcome:
        """Make this step's part of `spec` so; raises when it cannot (the VM then
        reports `error` with the message, and the step is tried again next pass)."""
        ...

    def forget(self, vm_id: str) -> None:
        """Drop what the step keeps in memory of a VM that left this host."""
        return None


@dataclass(frozen=True)
class Converged:
    """A VM after its steps in one pass."""

    state: VmState
    detail: str = ""
    """Why the VM is in `error`."""
    soon: bool = False
    ran: tuple[str, ...] = ()
    """The steps that ran, in order (the last one may have failed)."""


def converge(steps: Sequence[Step], spec: VmSpec, vm: VmPass) -> Converged:
    """Run `steps` in order for `spec`, until one ends the VM's pass or fails."""
    state = VmState.PREPARING
    soon = False
    ran: list[str] = []
    for step in steps:
        ran.append(step.name)
        try:
            outcome = step.run(spec, vm)
        except Exception as error:  # reported, and every step runs again next pass
            log.warning("VM %s: %s: %s", spec.id, step.name, error)
            return Converged(VmState.ERROR, str(error), soon, tuple(ran))
        if outcome.state is not None:
            state = outcome.state
        soon = soon or outcome.soon
        if not outcome.go_on:
            break
    return Converged(state, "", soon, tuple(ran))

"""The QEMU step: start, reset or power off the VM as its spec asks.

It never blocks on a guest: a VM asked to stop gets the ACPI power button in one pass
and is forced off in a later one, once `stop_timeout` has passed. What must outlive
the agent is on disk, next to the VM: how many reboots it carried out (`reboots`) and
when it was asked to power off (`stopping`), so a restarted agent picks up where the
last one was and never stops or restarts a VM.
"""

from __future__ import annotations

import logging
import time

from nubis.agent.qemu import process
from nubis.agent.qemu.paths import VmPaths
from nubis.agent.steps.step import Outcome, Step, VmPass, waiting
from nubis.protocol import VmSpec, VmState

log = logging.getLogger(__name__)

REBOOTS_FILE = "reboots"
STOPPING_FILE = "stopping"

RUNNING = Outcome(VmState.RUNNING)


class Qemu(Step):
    name = "qemu"

    def run(self, spec: VmSpec, vm: VmPass) -> Outcome:
        paths = vm.paths
        stopping = paths.dir / STOPPING_FILE
        running = process.pid(paths) is not None
        if spec.running:
            stopping.unlink(missing_ok=True)
            if not running and not vm.host.may_start():
                # On its way, as far as the control plane is concerned: `stopped` would
                # tell it the VM came up stopped.
                return waiting(VmState.PREPARING)
            if not running:
                process.start(spec, paths, vm.host.acceleration, sandbox=vm.host.sandbox)
                _write_reboots(paths, spec.reboots)
                vm.started = True
            elif spec.reboots > reboots(paths):
                process.reboot(paths)
                _write_reboots(paths, spec.reboots)
            return RUNNING
        if not running:
            stopping.unlink(missing_ok=True)
            return Outcome(VmState.STOPPED, go_on=False)
        if not stopping.exists():
            process.powerdown(paths)
            stopping.write_text(f"{time.time()}\n")
        elif time.time() - float(stopping.read_text()) >= vm.host.stop_timeout:
            log.warning(
                "VM %s ignored the power button for %gs: forced off",
                spec.id,
                vm.host.stop_timeout,
            )
            process.kill(paths)
            stopping.unlink(missing_ok=True)
            return Outcome(VmState.STOPPED, go_on=False, soon=True)
        return waiting(VmState.RUNNING)


def reboots(paths: VmPaths) -> int:
    """The reboot requests this VM has carried out."""
    try:
        return int((paths.dir / REBOOTS_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return 0


def _write_reboots(paths: VmPaths, count: int) -> None:
    partial = paths.dir / f"{REBOOTS_FILE}.partial"
    partial.write_text(f"{count}\n")
    partial.replace(paths.dir / REBOOTS_FILE)

"""The disk step: the VM's qcow2 overlay on its base image (see `agent/disk.py`)."""

from __future__ import annotations

from nubis.agent.disk import make_overlay
from nubis.agent.steps.step import DONE, Outcome, Step, VmPass
from nubis.protocol import VmSpec


class Disk(Step):
    name = "disk"

    def run(self, spec: VmSpec, vm: VmPass) -> Outcome:
        if vm.paths.disk.exists():
            return DONE
        if vm.base is None:
            raise RuntimeError(f"the disk of {spec.id} needs its image first")
        vm.paths.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        make_overlay(vm.base, vm.paths.disk, spec.disk_bytes, spec.image.virtual_size_bytes)
        return DONE

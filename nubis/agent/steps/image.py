"""The image step: the VM's base image in this host's cache, fetched if it is not.

A fetch runs in the background (`ImageCache`); meanwhile the VM is `preparing` and its
later steps wait. Once the VM has its disk, the image is not needed again for it.
"""

from __future__ import annotations

from nubis.agent.steps.step import DONE, Outcome, Step, VmPass, waiting
from nubis.protocol import VmSpec, VmState


class Image(Step):
    name = "image"

    def run(self, spec: VmSpec, vm: VmPass) -> Outcome:
        if vm.paths.disk.exists():
            return DONE
        vm.base = vm.host.images.ready(spec.image)
        if vm.base is not None:
            return DONE
        failure = vm.host.images.failure(spec.image.id)
        if failure is not None:
            raise RuntimeError(failure)
        return waiting(VmState.PREPARING)

"""One pass of the agent: converge this host to its desired state, and say what it sees.

A pass is idempotent and cheap when nothing changed (one netlink dump, a look at each
VM's pidfile), so the agent runs one after every long poll, changed or not. It never
blocks on a guest: each VM's work is a list of steps (`steps/`) that do what is
missing and say when the VM is still on its way (its image coming, powering off), so
that the next pass comes soon.

A pass first removes the VMs that are no longer this host's, then converges the
host's networks (bridges, VXLAN devices, radvd, every VM's taps and the guard) and the
metadata service, then runs each VM's steps, and last removes the images no VM uses.

What the agent makes carries the name of what it belongs to: a VM's files are
`vms/<vm id>/`, its taps are the NICs' `nt…` names, the networks' bridges and VXLAN
devices are the desired `nb…` and `nx…` names, with their radvd in `net/`
(`net/networks.py` converges all of that). Whatever is there under those names that
the desired state does not name is removed, and reported.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nubis.agent.console import ConsoleTails
from nubis.agent.image_cache import ImageCache
from nubis.agent.net.metadata import MetadataService, by_mark
from nubis.agent.net.networks import Networks
from nubis.agent.qemu import process
from nubis.agent.qemu.paths import VmPaths, vm_ids
from nubis.agent.steps import vm_steps
from nubis.agent.steps.qemu import reboots
from nubis.agent.steps.step import Host, Step, VmPass, converge
from nubis.protocol import Desired, Network, Status, VmObserved, VmSpec, VmState

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(
        self,
        state_dir: Path,
        images: ImageCache,
        acceleration: str,
        *,
        stop_timeout: float = process.STOP_TIMEOUT,
        sandbox: bool = True,
        underlay_address: str | None = None,
        may_start: Callable[[], bool] = lambda: True,
        steps: Sequence[Step] | None = None,
    ) -> None:
        """`underlay_address` is the host's address that project networks' VXLAN
        devices speak from. `may_start` is asked right before each VM is started: a
        host that fenced itself starts none (see `fence.Gate`). `steps`: each VM's
        work (default: `steps.vm_steps()`)."""
        self.vms_root = Path(os.path.abspath(state_dir / "vms"))
        self.net_dir = Path(os.path.abspath(state_dir / "net"))
        self.images = images
        self.acceleration = acceleration
        self.stop_timeout = stop_timeout
        self.sandbox = sandbox
        self.may_start = may_start
        self.steps = list(vm_steps() if steps is None else steps)
        self.host = Host(
            images,
            acceleration,
            sandbox=sandbox,
            stop_timeout=stop_timeout,
            may_start=may_start,
            network_of=self._network_of,
        )
        self.networks = Networks(self.net_dir, underlay_address)
        self._metadata: MetadataService | None = None
        self._served: dict[int, VmSpec] = {}
        self._project_networks: dict[str, Network] = {}
        self._consoles = ConsoleTails()
        self._busy = False
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="prepare")

    @property
    def busy(self) -> bool:
        """Whether the last pass left a VM on its way (preparing or powering off), so the
        next pass should come soon rather than after a full long poll."""
        return self._busy

    def converge(self, desired: Desired) -> Status:
        wanted = {vm.id: vm for vm in desired.vms}
        # Before anything else, in every pass (the first after a restart or a fence
        # too): a VM that is no longer this host's may run elsewhere by now. A removal
        # that fails ends the pass here, before any VM is started.
        removed = self._remove_vms(wanted)
        self._busy = False
        try:
            removed += self._converge_network(desired)
        except Exception as error:  # reported per VM, tried again next pass
            log.exception("cannot set up the host's networks")
            reason = f"the host's networks could not be set up: {error}"
            observed = [self._failed(spec, reason) for spec in desired.vms]
        else:
            observed = list(self._pool.map(self._converge_vm, desired.vms))
        removed += self._remove_images(desired)
        return Status(revision=desired.revision, vms=observed, removed=removed)

    def delivered(self) -> None:
        """The last status reached the control plane: its console tails need no resend."""
        self._consoles.delivered()

    def close(self) -> None:
        """Stop serving metadata (VMs, radvd and links stay: they outlive the agent)."""
        if self._metadata is not None:
            self._metadata.stop()
            self._metadata = None
        self._pool.shutdown(wait=True)

    # VMs

    def _remove_vms(self, wanted: dict[str, VmSpec]) -> list[str]:
        removed = []
        for vm_id in vm_ids(self.vms_root):
            if vm_id in wanted:
                continue
            paths = VmPaths.of(self.vms_root, vm_id)
            process.kill(paths)
            shutil.rmtree(paths.dir)
            self._consoles.forget(vm_id)
            for step in self.steps:
                step.forget(vm_id)
            removed.append(f"vm {vm_id}")
            log.info("removed VM %s", vm_id)
        return removed

    def _converge_vm(self, spec: VmSpec) -> VmObserved:
        vm = VmPass(self.host, VmPaths.of(self.vms_root, spec.id))
        done = converge(self.steps, spec, vm)
        if done.soon:
            self._busy = True
        return self._seen(spec, vm.paths, done.state, done.detail)

    def _seen(self, spec: VmSpec, paths: VmPaths, state: VmState, detail: str = "") -> VmObserved:
        return VmObserved(
            id=spec.id,
            state=state,
            reboots=reboots(paths),
            detail=detail,
            console=self._consoles.tail(paths),
        )

    def _failed(self, spec: VmSpec, reason: str) -> VmObserved:
        return self._seen(spec, VmPaths.of(self.vms_root, spec.id), VmState.ERROR, reason)

    # Networks

    def _converge_network(self, desired: Desired) -> list[str]:
        """The networks, taps and guard for exactly `desired`'s VMs (with no VM, none of
        them), and the metadata service on the host network's bridge."""
        self._served = by_mark(desired.vms)
        self._project_networks = {network.id: network for network in desired.networks}
        removed = self.networks.converge(desired)
        self._serve_metadata(self.networks.host_bridge)
        return removed

    def _serve_metadata(self, bridge: str | None) -> None:
        current = self._metadata
        if current is not None and current.bridge != bridge:
            current.stop()
            self._metadata = None
        if bridge is not None and self._metadata is None:
            service = MetadataService(bridge, self._served_vm, network_of=self._network_of)
            service.start()
            self._metadata = service

    def _served_vm(self, mark: int) -> VmSpec | None:
        return self._served.get(mark)

    def _network_of(self, network_id: str) -> Network | None:
        return self._project_networks.get(network_id)

    # Images

    def _remove_images(self, desired: Desired) -> list[str]:
        used = {vm.image.id for vm in desired.vms}
        removed = []
        for image_id in self.images.cached():
            if image_id not in used and self.images.remove(image_id):
                removed.append(f"image {image_id}")
        return removed

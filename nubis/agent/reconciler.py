"""One pass of the agent: converge this host to its desired state, and say what it sees.

A pass is idempotent and cheap when nothing changed (one netlink dump, a look at each
VM's pidfile), so the agent runs one after every long poll, changed or not. It never
blocks on a guest: a VM asked to stop gets the ACPI power button in one pass and is
forced off in a later one, once `stop_timeout` has passed; an image is fetched in the
background while the VMs that need it report `preparing`.

What the agent makes carries the name of what it belongs to: a VM's files are
`vms/<vm id>/`, its taps are the NICs' `nt…` names, the networks' bridges and VXLAN
devices are the desired `nb…` and `nx…` names, with their radvd in `net/`
(`net/networks.py` converges all of that). Whatever is there under those names that
the desired state does not name is removed, and reported.

The state that must outlive the agent is on disk, next to the VM: how many reboots it
carried out (`reboots`) and when it was asked to power off (`stopping`). A restarted
agent therefore picks up where the last one was, and never stops or restarts a VM.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nubis.agent import disk, seed
from nubis.agent.image_cache import ImageCache
from nubis.agent.net.metadata import MetadataService, by_mark
from nubis.agent.net.networks import Networks
from nubis.agent.qemu import hotplug, process
from nubis.agent.qemu.paths import VmPaths, vm_ids
from nubis.protocol import (
    CONSOLE_TAIL_BYTES,
    Desired,
    Network,
    Nic,
    Status,
    VmObserved,
    VmSpec,
    VmState,
)

log = logging.getLogger(__name__)

REBOOTS_FILE = "reboots"
STOPPING_FILE = "stopping"


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
    ) -> None:
        """`underlay_address` is the host's address that project networks' VXLAN
        devices speak from. `may_start` is asked right before each VM is started: a
        host that fenced itself starts none (see `fence.Gate`)."""
        self.vms_root = Path(os.path.abspath(state_dir / "vms"))
        self.net_dir = Path(os.path.abspath(state_dir / "net"))
        self.images = images
        self.acceleration = acceleration
        self.stop_timeout = stop_timeout
        self.sandbox = sandbox
        self.may_start = may_start
        self.networks = Networks(self.net_dir, underlay_address)
        self._metadata: MetadataService | None = None
        self._served: dict[int, VmSpec] = {}
        self._project_networks: dict[str, Network] = {}
        self._console_sent: dict[str, int] = {}
        self._console_pending: dict[str, int] = {}
        self._nics_synced: dict[str, list[Nic]] = {}
        """Each running VM's NICs as QEMU was last seen to have them (after a restart of
        the agent: none known, so the first pass asks QEMU)."""
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
        self._console_sent.update(self._console_pending)
        self._console_pending.clear()

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
            self._console_sent.pop(vm_id, None)
            self._nics_synced.pop(vm_id, None)
            removed.append(f"vm {vm_id}")
            log.info("removed VM %s", vm_id)
        return removed

    def _converge_vm(self, spec: VmSpec) -> VmObserved:
        paths = VmPaths.of(self.vms_root, spec.id)
        try:
            if not self._prepare(spec, paths):
                self._busy = True
                return self._seen(spec, paths, VmState.PREPARING)
            state = self._power(spec, paths)
        except Exception as error:  # reported, tried again next pass
            log.warning("VM %s: %s", spec.id, error)
            return self._failed(spec, str(error))
        return self._seen(spec, paths, state)

    def _prepare(self, spec: VmSpec, paths: VmPaths) -> bool:
        """Make the VM's disk and seed; False while its image is still on its way."""
        if paths.disk.exists() and paths.seed.exists():
            return True
        base = self.images.ready(spec.image)
        if base is None:
            failure = self.images.failure(spec.image.id)
            if failure is not None:
                raise RuntimeError(failure)
            return False
        paths.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        disk.make_overlay(base, paths.disk, spec.disk_bytes, spec.image.virtual_size_bytes)
        if not paths.seed.exists():
            seed.write_seed(spec, paths.seed, self._network_of)
        return True

    def _power(self, spec: VmSpec, paths: VmPaths) -> VmState:
        """Start, reset or power off the VM as `spec` asks; the state it is in now."""
        stopping = paths.dir / STOPPING_FILE
        running = process.pid(paths) is not None
        if spec.running:
            stopping.unlink(missing_ok=True)
            if not running and not self.may_start():
                # On its way, as far as the control plane is concerned: `stopped` would
                # tell it the VM came up stopped.
                self._busy = True
                return VmState.PREPARING
            if not running:
                process.start(spec, paths, self.acceleration, sandbox=self.sandbox)
                _write_reboots(paths, spec.reboots)
                self._nics_synced[spec.id] = spec.nics
            else:
                if spec.reboots > _reboots(paths):
                    process.reboot(paths)
                    _write_reboots(paths, spec.reboots)
                self._sync_nics(spec, paths)
            return VmState.RUNNING
        if not running:
            stopping.unlink(missing_ok=True)
            return VmState.STOPPED
        self._busy = True
        if not stopping.exists():
            process.powerdown(paths)
            stopping.write_text(f"{time.time()}\n")
        elif time.time() - float(stopping.read_text()) >= self.stop_timeout:
            log.warning(
                "VM %s ignored the power button for %gs: forced off", spec.id, self.stop_timeout
            )
            process.kill(paths)
            stopping.unlink(missing_ok=True)
            return VmState.STOPPED
        return VmState.RUNNING

    def _sync_nics(self, spec: VmSpec, paths: VmPaths) -> None:
        """Plug in and unplug a running VM's project NICs as its spec has them now; QMP
        is asked only when they changed. An unplug under way (the guest must let go)
        brings the next pass soon."""
        if self._nics_synced.get(spec.id) == spec.nics:
            return
        if hotplug.sync_nics(spec, paths, self.acceleration):
            self._busy = True
        else:
            self._nics_synced[spec.id] = spec.nics

    def _seen(self, spec: VmSpec, paths: VmPaths, state: VmState, detail: str = "") -> VmObserved:
        return VmObserved(
            id=spec.id,
            state=state,
            reboots=_reboots(paths),
            detail=detail,
            console=self._console(paths),
        )

    def _failed(self, spec: VmSpec, reason: str) -> VmObserved:
        return self._seen(spec, VmPaths.of(self.vms_root, spec.id), VmState.ERROR, reason)

    def _console(self, paths: VmPaths) -> str | None:
        """The console's tail if it grew since the control plane last got it."""
        try:
            size = paths.serial_log.stat().st_size
        except FileNotFoundError:
            return None
        if self._console_sent.get(paths.vm_id) == size:
            return None
        with paths.serial_log.open("rb") as log_file:
            log_file.seek(max(0, size - CONSOLE_TAIL_BYTES))
            tail = log_file.read(CONSOLE_TAIL_BYTES)
        self._console_pending[paths.vm_id] = size
        return tail.decode(errors="replace")

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


def _reboots(paths: VmPaths) -> int:
    """The reboot requests this VM has carried out."""
    try:
        return int((paths.dir / REBOOTS_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return 0


def _write_reboots(paths: VmPaths, count: int) -> None:
    partial = paths.dir / f"{REBOOTS_FILE}.partial"
    partial.write_text(f"{count}\n")
    partial.replace(paths.dir / REBOOTS_FILE)

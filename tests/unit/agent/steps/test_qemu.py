"""The QEMU step: a host whose gate is closed (just started, or fenced) starts no VM,
and a VM that should not run and does not is left alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from nubis.agent.image_cache import ImageCache
from nubis.agent.qemu.paths import VmPaths
from nubis.agent.steps.qemu import REBOOTS_FILE, STOPPING_FILE, Qemu
from nubis.agent.steps.step import Host, Outcome, VmPass
from nubis.protocol import VmState
from tests.unit.agent.vm_specs import vm_spec


def _no_chunks(image_id: str) -> Iterator[bytes]:
    raise AssertionError(f"no image is fetched here ({image_id})")


def _vm(state_dir: Path, host: Host) -> VmPass:
    paths = VmPaths.of(state_dir / "vms", vm_spec().id)
    paths.dir.mkdir(parents=True)
    return VmPass(host, paths)


def test_a_vm_that_should_run_is_not_started_while_the_gate_is_closed(state_dir: Path) -> None:
    images = ImageCache(state_dir / "images", _no_chunks)
    vm = _vm(state_dir, Host(images, "tcg", may_start=lambda: False))
    # Were it started, QEMU would be run (and fail here, with no disk).
    outcome = Qemu().run(vm_spec(running=True), vm)
    # On its way, the later steps wait, and the next pass comes soon to start it once
    # the gate opens.
    assert outcome == Outcome(VmState.PREPARING, go_on=False, soon=True)
    assert not (vm.paths.dir / REBOOTS_FILE).exists()
    assert not vm.started


def test_a_stopped_vm_that_should_not_run_ends_its_pass_without_hurry(state_dir: Path) -> None:
    images = ImageCache(state_dir / "images", _no_chunks)
    vm = _vm(state_dir, Host(images, "tcg"))
    # A power-off the last agent asked for, carried out meanwhile.
    (vm.paths.dir / STOPPING_FILE).write_text("1700000000.0\n")
    outcome = Qemu().run(vm_spec(running=False), vm)
    assert outcome == Outcome(VmState.STOPPED, go_on=False, soon=False)
    assert not (vm.paths.dir / STOPPING_FILE).exists()

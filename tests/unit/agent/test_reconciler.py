"""The reconciler reports each VM as its steps left it, with its console's tail; a VM
on its way brings the next pass soon; a VM that left the host is forgotten."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from nubis.agent.image_cache import ImageCache
from nubis.agent.qemu.paths import VmPaths
from nubis.agent.reconciler import Reconciler
from nubis.agent.steps.step import Outcome, waiting
from nubis.protocol import VmObserved, VmState
from tests.unit.agent.steps.noting import Noting
from tests.unit.agent.vm_specs import vm_spec


def _no_chunks(image_id: str) -> Iterator[bytes]:
    raise AssertionError(f"no image is fetched here ({image_id})")


def _reconciler(state_dir: Path, *steps: Noting) -> Reconciler:
    images = ImageCache(state_dir / "images", _no_chunks)
    return Reconciler(state_dir, images, "tcg", steps=steps)


def test_a_vm_is_reported_as_its_steps_left_it_with_its_console_tail(state_dir: Path) -> None:
    runs: list[str] = []
    reconciler = _reconciler(state_dir, Noting("qemu", runs, Outcome(VmState.RUNNING)))
    try:
        spec = vm_spec()
        paths = VmPaths.of(reconciler.vms_root, spec.id)
        paths.dir.mkdir(parents=True)
        paths.serial_log.write_text("nubis-tiny: ssh ready\n")
        expected = VmObserved(
            id=spec.id, state=VmState.RUNNING, reboots=0, console="nubis-tiny: ssh ready\n"
        )
        assert reconciler._converge_vm(spec) == expected
        assert not reconciler.busy
        # Until a status carrying the tail got through, the next one carries it again.
        assert reconciler._converge_vm(spec) == expected
        reconciler.delivered()
        assert reconciler._converge_vm(spec).console is None
    finally:
        reconciler.close()


def test_a_failed_step_is_reported_with_the_console_tail_all_the_same(state_dir: Path) -> None:
    reconciler = _reconciler(state_dir, Noting("qemu", [], OSError("QEMU: no such file")))
    try:
        spec = vm_spec()
        paths = VmPaths.of(reconciler.vms_root, spec.id)
        paths.dir.mkdir(parents=True)
        paths.serial_log.write_text("Kernel panic\n")
        assert reconciler._converge_vm(spec) == VmObserved(
            id=spec.id,
            state=VmState.ERROR,
            reboots=0,
            detail="QEMU: no such file",
            console="Kernel panic\n",
        )
    finally:
        reconciler.close()


def test_a_vm_on_its_way_brings_the_next_pass_soon(state_dir: Path) -> None:
    reconciler = _reconciler(state_dir, Noting("image", [], waiting(VmState.PREPARING)))
    try:
        assert reconciler._converge_vm(vm_spec()).state == VmState.PREPARING
        assert reconciler.busy
    finally:
        reconciler.close()


def test_a_vm_that_left_the_host_is_removed_and_forgotten_by_every_step(
    state_dir: Path,
) -> None:
    runs: list[str] = []
    reconciler = _reconciler(state_dir, Noting("disk", runs), Noting("nics", runs))
    try:
        spec = vm_spec()
        paths = VmPaths.of(reconciler.vms_root, spec.id)
        paths.dir.mkdir(parents=True)
        assert reconciler._remove_vms({}) == [f"vm {spec.id}"]
        assert not paths.dir.exists()
        assert runs == [f"disk forgets {spec.id}", f"nics forgets {spec.id}"]
    finally:
        reconciler.close()

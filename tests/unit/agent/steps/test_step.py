"""A VM's steps run in order: one that waits or fails ends the VM's pass, and the next
pass runs every step again from the first."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nubis.agent.image_cache import ImageCache
from nubis.agent.qemu.paths import VmPaths
from nubis.agent.steps.step import Converged, Host, Outcome, VmPass, converge, waiting
from nubis.protocol import VmState
from tests.unit.agent.steps.noting import Noting
from tests.unit.agent.vm_specs import vm_spec


def _no_chunks(image_id: str) -> Iterator[bytes]:
    raise AssertionError(f"no image is fetched here ({image_id})")


@pytest.fixture
def vm(state_dir: Path) -> VmPass:
    host = Host(ImageCache(state_dir / "images", _no_chunks), "tcg")
    return VmPass(host, VmPaths.of(state_dir / "vms", vm_spec().id))


RUNNING = Outcome(VmState.RUNNING)


def test_every_step_runs_in_order_and_the_last_state_said_is_the_vms(vm: VmPass) -> None:
    runs: list[str] = []
    steps = [
        Noting("image", runs),
        Noting("qemu", runs, RUNNING),
        Noting("nics", runs, Outcome(soon=True)),
    ]
    assert converge(steps, vm_spec(), vm) == Converged(
        VmState.RUNNING, soon=True, ran=("image", "qemu", "nics")
    )
    assert runs == ["image", "qemu", "nics"]


def test_a_vm_whose_steps_say_no_state_is_preparing(vm: VmPass) -> None:
    assert converge([Noting("image", [])], vm_spec(), vm).state == VmState.PREPARING


def test_a_waiting_step_ends_the_pass_and_asks_for_the_next_soon(vm: VmPass) -> None:
    runs: list[str] = []
    steps = [
        Noting("image", runs, waiting(VmState.PREPARING)),
        Noting("disk", runs),
    ]
    assert converge(steps, vm_spec(), vm) == Converged(VmState.PREPARING, soon=True, ran=("image",))
    assert runs == ["image"]


def test_a_step_that_leaves_nothing_to_do_ends_the_pass_without_hurry(vm: VmPass) -> None:
    runs: list[str] = []
    steps = [
        Noting("qemu", runs, Outcome(VmState.STOPPED, go_on=False)),
        Noting("nics", runs),
    ]
    assert converge(steps, vm_spec(), vm) == Converged(VmState.STOPPED, ran=("qemu",))


def test_a_failing_step_stops_the_later_ones_and_reports_its_error(vm: VmPass) -> None:
    runs: list[str] = []
    steps = [
        Noting("image", runs),
        Noting("disk", runs, RuntimeError("qemu-img: No space left on device")),
        Noting("seed", runs),
    ]
    assert converge(steps, vm_spec(), vm) == Converged(
        VmState.ERROR, "qemu-img: No space left on device", ran=("image", "disk")
    )
    assert runs == ["image", "disk"]


def test_a_failed_step_is_tried_again_next_pass_after_those_before_it(vm: VmPass) -> None:
    runs: list[str] = []
    steps = [
        Noting("image", runs),
        Noting("qemu", runs, OSError("QMP socket not there yet"), RUNNING),
        Noting("nics", runs),
    ]
    assert converge(steps, vm_spec(), vm).state == VmState.ERROR
    assert converge(steps, vm_spec(), vm) == Converged(
        VmState.RUNNING, ran=("image", "qemu", "nics")
    )
    assert runs == ["image", "qemu", "image", "qemu", "nics"]

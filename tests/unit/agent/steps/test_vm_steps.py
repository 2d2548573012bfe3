"""A VM's steps, in the order they run: each needs what those before it made."""

from __future__ import annotations

from nubis.agent.steps import vm_steps


def test_a_vms_steps_are_image_disk_seed_qemu_nics_in_that_order() -> None:
    assert [step.name for step in vm_steps()] == ["image", "disk", "seed", "qemu", "nics"]


def test_each_reconciler_gets_steps_of_its_own() -> None:
    # Steps keep memory of their VMs (the NICs step what QEMU has): never shared.
    first, second = vm_steps(), vm_steps()
    assert all(a is not b for a, b in zip(first, second, strict=True))

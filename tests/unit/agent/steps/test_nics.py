"""The NICs step asks QMP only when a VM's NICs may differ from what QEMU has."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nubis.agent.image_cache import ImageCache
from nubis.agent.qemu import QemuError
from nubis.agent.qemu.paths import VmPaths
from nubis.agent.steps.nics import Nics
from nubis.agent.steps.step import DONE, Host, VmPass
from tests.unit.agent.vm_specs import nic, vm_spec


def _no_chunks(image_id: str) -> Iterator[bytes]:
    raise AssertionError(f"no image is fetched here ({image_id})")


def _vm(state_dir: Path, *, started: bool = False) -> VmPass:
    host = Host(ImageCache(state_dir / "images", _no_chunks), "tcg")
    return VmPass(host, VmPaths.of(state_dir / "vms", vm_spec().id), started=started)


# No QEMU runs in these tests: a step that asks QMP fails with "it is not running".


def test_a_vm_started_in_this_pass_has_its_nics_and_qmp_is_not_asked(state_dir: Path) -> None:
    step = Nics()
    spec = vm_spec(nics=[nic(0), nic(1)])
    assert step.run(spec, _vm(state_dir, started=True)) == DONE
    # Nor in the next pass, while the NICs stay the same.
    assert step.run(spec, _vm(state_dir)) == DONE


def test_changed_nics_of_a_running_vm_are_asked_of_qmp(state_dir: Path) -> None:
    step = Nics()
    step.run(vm_spec(nics=[nic(0)]), _vm(state_dir, started=True))
    with pytest.raises(QemuError, match="it is not running"):
        step.run(vm_spec(nics=[nic(0), nic(1)]), _vm(state_dir))


def test_a_restarted_agent_asks_qmp_what_a_running_vm_has(state_dir: Path) -> None:
    with pytest.raises(QemuError, match="it is not running"):
        Nics().run(vm_spec(nics=[nic(0)]), _vm(state_dir))


def test_a_vm_that_left_the_host_is_forgotten(state_dir: Path) -> None:
    step = Nics()
    spec = vm_spec(nics=[nic(0)])
    step.run(spec, _vm(state_dir, started=True))
    step.forget(spec.id)
    with pytest.raises(QemuError, match="it is not running"):
        step.run(spec, _vm(state_dir))

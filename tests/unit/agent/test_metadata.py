"""The metadata service knows a VM by its mark, and serves none of two VMs that share one."""

from __future__ import annotations

from nubis.addresses import mark_of
from nubis.agent.net.metadata import by_mark
from tests.unit.agent.vm_specs import vm_spec


def test_a_mark_is_stable_non_zero_and_32_bit() -> None:
    marks = {mark_of(f"vm-{n}") for n in range(1000)}
    assert len(marks) == 1000
    assert all(0 < mark < 2**32 for mark in marks)
    # Every host computes it again on its own: it is this, forever.
    assert mark_of("vm-web1") == 0x621F6358


def test_by_mark_indexes_vms_by_their_mark() -> None:
    web, db = vm_spec(id="vm-web1"), vm_spec(id="vm-db1")
    assert by_mark([web, db]) == {mark_of("vm-web1"): web, mark_of("vm-db1"): db}


def test_vms_sharing_a_mark_get_no_metadata_at_all() -> None:
    # Two ids whose marks collide, found by search.
    first, second, web = vm_spec(id="vm-43285"), vm_spec(id="vm-56583"), vm_spec(id="vm-web1")
    assert mark_of(first.id) == mark_of(second.id)
    assert by_mark([first, second, web]) == {mark_of("vm-web1"): web}

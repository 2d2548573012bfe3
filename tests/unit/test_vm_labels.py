"""A VM's labels are named once (models.VmLabel), and are exactly its prog's."""

from __future__ import annotations

from nubis.models import GONE, LEAVING, ON_HOST, VmLabel
from nubis.progs.vm import VmNexus


def test_the_vm_prog_has_exactly_the_labels_vmlabel_names() -> None:
    assert set(VmNexus.labels) == {label.value for label in VmLabel}
    assert VmNexus.start_label == VmLabel.WAIT_UP


def test_only_a_vm_placed_or_settled_is_in_its_host_s_desired_state() -> None:
    assert sorted(ON_HOST) == [VmLabel.SETTLED, VmLabel.WAIT_UP]
    # Being deleted, moving, stranded, being placed: on no host.
    assert not ON_HOST & (GONE | LEAVING | {VmLabel.STRANDED, VmLabel.EVACUATE})

"""VMs waiting for capacity: when some may have appeared, they look again at once."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from nubis.engine import strand
from nubis.models import Vm, VmLabel


def wake(session: Session, location_id: UUID) -> None:
    """Capacity may have appeared in the location (a host joined or takes VMs again, a
    VM was deleted): the VMs there that fit nowhere look again now."""
    for strand_id in session.scalars(
        select(Vm.strand_id).where(
            Vm.location_id == location_id,
            Vm.label == VmLabel.EVACUATE,
            Vm.waiting.is_not(None),
        )
    ):
        if strand_id is not None:
            strand.incr(session, strand_id, "capacity")

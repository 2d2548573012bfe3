"""Bodies of the operator's host routes."""

from __future__ import annotations

from pydantic import BaseModel


class EvacuationOut(BaseModel):
    host: str
    """The host's id."""
    name: str
    allocation_state: str
    """`draining` (or `maintenance`, if it was): it takes no new VMs."""
    moving: int
    """How many VMs move: each is stopped on the host, then recreated on another."""

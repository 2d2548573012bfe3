"""Closed sets of words that the control plane stores and its clients offer as choices.

Each is a plain StrEnum, kept out of `nubis.models` so that the CLI, an HTTP client,
can name them without loading SQLAlchemy and every model at each start; the models
store them and `nubis.models` re-exports them.
"""

from __future__ import annotations

from enum import StrEnum


class Flooding(StrEnum):
    """How VXLAN reaches the hosts of a network: its IPv6 multicast group, or unicast
    head-end replication to the hosts the control plane lists."""

    MULTICAST = "multicast"
    UNICAST = "unicast"


class StrandStatus(StrEnum):
    ACTIVE = "active"
    """Runs its labels; may be waiting for its schedule or held by a worker."""
    FAILED = "failed"
    """Stopped after too many failed tries; an operator may retry it."""
    EXITED = "exited"
    """Done; kept for a while for inspection, then deleted."""

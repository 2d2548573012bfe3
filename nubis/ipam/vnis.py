"""VXLAN network identifiers: each network of a location has its own."""

from __future__ import annotations

from collections.abc import Iterable

from nubis.errors import Conflict

MAX_VNI = 2**24 - 1
"""VXLAN's identifiers are 24 bits; 0 is left unused."""


def first_free(taken: Iterable[int], most: int = MAX_VNI) -> int:
    """The lowest VNI from 1 to `most` not in `taken`; Conflict if there is none."""
    used = set(taken)
    for vni in range(1, most + 1):
        if vni not in used:
            return vni
    raise Conflict("the location has no free VNI")

"""VXLAN network identifiers: each network of a location has its own, chosen at random.

A VNI is not a secret (it is in every VXLAN datagram on the underlay, and users see
their networks'), but a network's VNI must say nothing of the others': sequential ones
would name every other tenant's network to anyone who sees one of their own.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Collection

from nubis.errors import Conflict

MAX_VNI = 2**24 - 1
"""VXLAN's identifiers are 24 bits; 0 is left unused."""
_DRAWS = 64
"""Random draws before the free VNIs are counted out (a location nearly full)."""


def pick(
    taken: Collection[int],
    *,
    randbelow: Callable[[int], int] | None = None,
    most: int = MAX_VNI,
) -> int:
    """A VNI from 1 to `most` not in `taken`, drawn at random (by `randbelow`, default
    `secrets.randbelow`); Conflict if there is none."""
    randbelow = randbelow or secrets.randbelow
    used = set(taken)
    for _ in range(_DRAWS):
        vni = randbelow(most) + 1
        if vni not in used:
            return vni
    free = [vni for vni in range(1, most + 1) if vni not in used]
    if not free:
        raise Conflict("the location has no free VNI")
    return free[randbelow(len(free))]

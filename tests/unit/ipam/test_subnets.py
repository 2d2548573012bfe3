"""The /64s of a location's prefix: numbered from 1, the lowest free one taken."""

from __future__ import annotations

import pytest

from nubis.errors import Conflict
from nubis.ipam import subnets


def test_a_prefix_s_64s_are_numbered_from_1() -> None:
    assert subnets.count("2001:db8:1::/48") == 65536
    assert subnets.subnet("2001:db8:1::/48", 2) == "2001:db8:1:2::/64"
    assert subnets.gateway("2001:db8:1:2::/64") == "2001:db8:1:2::1"
    with pytest.raises(ValueError, match="no /64 number 0"):
        subnets.subnet("2001:db8:1::/48", 0)


def test_the_lowest_free_64_is_taken_until_there_is_none() -> None:
    assert subnets.first_free("2001:db8:9::/62", []) == 1
    assert subnets.first_free("2001:db8:9::/62", [1, 3]) == 2
    with pytest.raises(Conflict, match=r"2001:db8:9::/62 has no free /64 left"):
        subnets.first_free("2001:db8:9::/62", [1, 2, 3])

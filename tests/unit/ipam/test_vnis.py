"""VNIs: a free one of a location drawn at random, and the multicast group each floods to."""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Callable
from uuid import UUID

import pytest

from nubis import networks
from nubis.errors import Conflict
from nubis.ids import Kind, format_id, new_id
from nubis.ipam import vnis


def _draws(*values: int) -> Callable[[int], int]:
    """A `randbelow` that answers `values` in turn."""
    answers = iter(values)
    return lambda _bound: next(answers)


def test_a_vni_is_drawn_at_random_and_a_taken_one_is_drawn_again() -> None:
    assert vnis.pick([], randbelow=_draws(41)) == 42
    assert vnis.pick([42, 7], randbelow=_draws(41, 6, 99)) == 100


def test_a_location_nearly_full_picks_among_the_free_vnis() -> None:
    taken = [vni for vni in range(1, 101) if vni != 57]
    assert vnis.pick(taken, randbelow=_draws(*[0] * 64, 0), most=100) == 57


def test_a_location_with_every_vni_taken_is_a_conflict() -> None:
    with pytest.raises(Conflict, match="the location has no free VNI"):
        vnis.pick([1, 2, 3], most=3)
    assert vnis.MAX_VNI == 2**24 - 1


def test_vnis_drawn_one_after_the_other_are_far_apart() -> None:
    drawn = [vnis.pick([]) for _ in range(20)]
    assert all(1 <= vni <= vnis.MAX_VNI for vni in drawn)
    assert min(abs(a - b) for a, b in itertools.pairwise(drawn)) > 1


@pytest.mark.parametrize(
    ("vni", "group"),
    [(1, "ff05::6e62:0:1"), (0x12345, "ff05::6e62:1:2345"), (2**24 - 1, "ff05::6e62:ff:ffff")],
)
def test_each_vni_has_a_site_local_multicast_group_of_its_own(vni: int, group: str) -> None:
    address = ipaddress.IPv6Address(networks.group(vni))

    assert str(address) == group
    assert address.is_multicast and address in ipaddress.IPv6Network("ff05::/16")


def test_there_is_no_group_for_what_is_not_a_vni() -> None:
    for wrong in (0, 2**24):
        with pytest.raises(ValueError, match="not a VNI"):
            networks.group(wrong)


def test_a_network_s_links_are_named_after_its_id_within_15_characters() -> None:
    key = UUID("0193d5c1-7a2b-7c3d-8e4f-123456789abc")

    # Every host names them and picks the bridge's MAC on its own: these, forever.
    assert networks.bridge_name(key) == "nbwkrj6hb7h6nw"
    assert networks.vxlan_name(key) == "nxwkrj6hb7h6nw"
    assert networks.bridge_mac(key) == "d6:00:e8:a9:c6:00"


def test_any_network_s_links_fit_linux_s_names_and_its_bridge_has_a_local_unicast_mac() -> None:
    key = new_id()
    assert networks.bridge_name(key) == f"nb{format_id(Kind.NETWORK, key)[-12:]}"
    assert len(networks.vxlan_name(key)) <= 15
    assert int(networks.bridge_mac(key)[:2], 16) & 0b11 == 0b10  # local, unicast

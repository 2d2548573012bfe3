from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nubis.addresses import eui64_address, link_local, stable_mac
from nubis.protocol import MAC_PATTERN


def test_eui64_address_is_what_linux_configures_by_slaac() -> None:
    # Seen on a veth with this MAC after a router advertisement of fd00:1:2:3::/64.
    assert eui64_address("fd00:1:2:3::/64", "02:aa:00:00:00:01") == "fd00:1:2:3:aa:ff:fe00:1"


def test_eui64_address_inverts_the_universal_local_bit() -> None:
    assert eui64_address("2001:db8::/64", "00:11:22:33:44:55") == "2001:db8::211:22ff:fe33:4455"


def test_link_local_is_the_eui64_in_fe80() -> None:
    assert link_local("02:aa:00:00:00:01") == "fe80::aa:ff:fe00:1"


def test_eui64_address_accepts_an_upper_case_mac() -> None:
    assert link_local("02:AA:00:00:00:01") == link_local("02:aa:00:00:00:01")


@pytest.mark.parametrize("prefix", ["fd00::/48", "fd00::/80", "fd00::1/64", "10.0.0.0/24"])
def test_eui64_address_refuses_anything_but_a_64(prefix: str) -> None:
    with pytest.raises(ValueError):
        eui64_address(prefix, "02:aa:00:00:00:01")


@pytest.mark.parametrize("mac", ["02:aa:00:00:00", "02-aa-00-00-00-01", "zz:aa:00:00:00:01", ""])
def test_eui64_address_refuses_a_malformed_mac(mac: str) -> None:
    with pytest.raises(ValueError):
        link_local(mac)


def test_stable_mac_is_the_same_everywhere_and_forever() -> None:
    # The control plane and every host compute it on their own, and must agree.
    assert stable_mac("vm-0193d5c1", 0) == "e2:e0:79:21:b2:2a"
    assert stable_mac("vm-0193d5c1", 1) == "6e:a7:21:fa:3a:e3"


def test_stable_mac_differs_per_nic_and_per_vm() -> None:
    macs = {stable_mac(vm, index) for vm in ("vm-a", "vm-b") for index in range(3)}
    assert len(macs) == 6


def test_stable_mac_refuses_a_negative_index() -> None:
    with pytest.raises(ValueError):
        stable_mac("vm-a", -1)


@given(owner=st.text(min_size=1, max_size=40), index=st.integers(min_value=0, max_value=64))
def test_stable_mac_is_a_locally_administered_unicast_mac(owner: str, index: int) -> None:
    mac = stable_mac(owner, index)
    assert re.match(MAC_PATTERN, mac)
    first = int(mac[:2], 16)
    assert first & 0b10, "locally administered"
    assert not first & 0b01, "unicast"


@given(owner=st.text(min_size=1, max_size=40))
def test_eui64_address_carries_the_whole_mac(owner: str) -> None:
    mac = stable_mac(owner, 0)
    interface_id = int(ipaddress.IPv6Address(eui64_address("fd00:1:2:3::/64", mac))).to_bytes(
        16, "big"
    )[8:]
    assert interface_id[3:5] == b"\xff\xfe"
    recovered = bytes([interface_id[0] ^ 0b10]) + interface_id[1:3] + interface_id[5:]
    assert recovered.hex(":") == mac

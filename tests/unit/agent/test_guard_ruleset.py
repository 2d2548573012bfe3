from __future__ import annotations

import pytest

from nubis.agent.net.guard import GuardedNic, guarded, removal, ruleset
from nubis.agent.net.metadata import mark_of
from nubis.protocol import ImageRef, Nic, VmSpec

A = GuardedNic(tap="nta", mac="02:aa:00:00:00:01", address="fd00:1:2:3:aa:ff:fe00:1", mark=0x111)
B = GuardedNic(tap="ntb", mac="02:bb:00:00:00:02", address="fd00:1:2:3:bb:ff:fe00:2", mark=0x222)


def chain(text: str, name: str) -> list[str]:
    """The rules of one chain of a ruleset, stripped."""
    lines = text.splitlines()
    start = lines.index(f"  chain {name} {{")
    end = lines.index("  }", start)
    return [line.strip() for line in lines[start + 1 : end]]


def test_the_table_is_replaced_in_one_script() -> None:
    text = ruleset([A])
    assert text.startswith(
        "table bridge nubis_guard\ndelete table bridge nubis_guard\ntable bridge nubis_guard {\n"
    )
    assert text.count("table bridge nubis_guard {") == 1


def test_frames_from_each_tap_go_through_its_own_chain() -> None:
    rules = chain(ruleset([B, A]), "prerouting")
    assert rules[0].startswith("type filter hook prerouting")
    assert rules[1] == 'iifname vmap { "nta" : jump from_nta, "ntb" : jump from_ntb }'


def test_every_frame_from_a_tap_is_marked_with_its_vm_s_mark_first() -> None:
    assert chain(ruleset([A]), "from_nta")[0] == "meta mark set 0x00000111"


def test_a_frame_from_another_mac_is_dropped() -> None:
    assert "ether saddr != 02:aa:00:00:00:01 drop" in chain(ruleset([A]), "from_nta")


def test_only_ipv6_arp_and_ipv4_get_past_the_mac_check() -> None:
    rules = chain(ruleset([A]), "from_nta")
    assert rules[-2] == (
        "ether type vmap { ip6 : jump from_nta_ip6, arp : jump from_nta_arp, "
        "ip : jump from_nta_ip }"
    )
    assert rules[-1] == "drop"


def test_ipv6_must_come_from_the_nic_s_address_its_link_local_or_the_unspecified() -> None:
    rules = chain(ruleset([A]), "from_nta_ip6")
    assert rules[0] == "ip6 saddr != { fd00:1:2:3:aa:ff:fe00:1, fe80::aa:ff:fe00:1, :: } drop"
    assert "ip6 saddr :: meta l4proto != ipv6-icmp drop" in rules


def test_router_advertisements_redirects_and_dhcpv6_answers_are_dropped() -> None:
    rules = chain(ruleset([A]), "from_nta_ip6")
    assert "icmpv6 type { nd-router-advert, nd-redirect } drop" in rules
    assert "udp sport 547 drop" in rules
    assert rules[-1] == "accept"


def test_neighbour_advertisements_speak_only_for_the_nic_s_addresses() -> None:
    rules = chain(ruleset([A]), "from_nta_ip6")
    assert (
        "icmpv6 type nd-neighbor-advert @th,64,128 != "
        "{ 0xfd0000010002000300aa00fffe000001, 0xfe8000000000000000aa00fffe000001 } drop"
    ) in rules


def test_ipv4_is_for_the_metadata_service_from_a_link_local_address_only() -> None:
    rules = chain(ruleset([A]), "from_nta_ip")
    assert rules == [
        "udp sport 67 drop",
        "ip saddr 169.254.169.254 drop",
        "ip saddr 169.254.0.0/16 ip daddr 169.254.169.254 accept",
        "drop",
    ]


def test_arp_must_carry_the_nic_s_mac() -> None:
    rules = chain(ruleset([A]), "from_nta_arp")
    assert rules[0] == "arp saddr ether != 02:aa:00:00:00:01 drop"
    assert "arp saddr ip 169.254.169.254 drop" in rules


def test_metadata_answers_leave_only_through_the_taps_of_their_vm() -> None:
    text = ruleset([A, B])
    assert chain(text, "output")[1] == 'oifname vmap { "nta" : jump to_nta, "ntb" : jump to_ntb }'
    assert chain(text, "to_ntb") == [
        "ip6 saddr fe80::a9fe:a9fe meta mark != { 0x0, 0x00000222 } drop",
        "ip saddr 169.254.169.254 meta mark != { 0x0, 0x00000222 } drop",
    ]


def test_no_taps_gives_an_empty_but_valid_table() -> None:
    text = ruleset([])
    assert "vmap" not in text
    assert chain(text, "prerouting") == [
        "type filter hook prerouting priority -300; policy accept;"
    ]


def test_a_tap_named_twice_is_refused() -> None:
    with pytest.raises(ValueError):
        ruleset([A, GuardedNic(tap="nta", mac=B.mac, address=B.address, mark=B.mark)])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tap", 'nta" : accept }'),
        ("tap", "eth0"),
        ("mac", "02:aa:00:00:00:01 accept"),
        ("address", "::/0"),
        ("mark", 0),
        ("mark", 2**32),
    ],
)
def test_nothing_unchecked_reaches_the_script(field: str, value: object) -> None:
    fields: dict[str, object] = {"tap": A.tap, "mac": A.mac, "address": A.address, "mark": 1}
    fields[field] = value
    with pytest.raises(ValueError):
        GuardedNic(**fields)  # type: ignore[arg-type]


def test_guarded_marks_each_nic_with_its_vm_s_mark() -> None:
    image = ImageRef(id="img-1", sha256="0" * 64, size_bytes=1, virtual_size_bytes=1)
    nics = [
        Nic(tap="ntx0", number=0, mac="02:00:00:00:00:01", address="fd00::1"),
        Nic(tap="ntx1", number=1, mac="02:00:00:00:00:02", address="fd00::2"),
    ]
    vm = VmSpec(
        id="vm-x",
        hostname="x",
        cores=1,
        memory_bytes=1,
        disk_bytes=1,
        image=image,
        running=True,
        reboots=0,
        nics=nics,
        ssh_keys=[],
    )
    assert guarded([vm]) == [
        GuardedNic(tap="ntx0", mac="02:00:00:00:00:01", address="fd00::1", mark=mark_of("vm-x")),
        GuardedNic(tap="ntx1", mac="02:00:00:00:00:02", address="fd00::2", mark=mark_of("vm-x")),
    ]


def test_removal_works_whether_or_not_the_table_exists() -> None:
    assert removal() == "table bridge nubis_guard\ndelete table bridge nubis_guard\n"

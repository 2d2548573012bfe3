from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from nubis.agent.net.guard import GuardedNic, Opening, check, guarded, removal, ruleset
from nubis.agent.net.metadata import mark_of
from nubis.protocol import FirewallRule, ImageRef, Ipam, Network, Nic, VmSpec

A = GuardedNic(tap="nta", mac="02:aa:00:00:00:01", address="fd00:1:2:3:aa:ff:fe00:1", mark=0x111)
B = GuardedNic(tap="ntb", mac="02:bb:00:00:00:02", address="fd00:1:2:3:bb:ff:fe00:2", mark=0x222)
SSH = Opening("tcp", 22, 22, "::/0")
P = GuardedNic(
    tap="ntp",
    mac="02:cc:00:00:00:03",
    address="fd00:5:6:7:cc:ff:fe00:3",
    mark=0x333,
    openings=(SSH,),
    bridge="nbp",
)
Q = GuardedNic(
    tap="ntq", mac="02:dd:00:00:00:04", address=None, mark=0x444, openings=(), bridge="nbp"
)

needs_nft = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None, reason="needs root and nft"
)


def chain(text: str, name: str) -> list[str]:
    """The rules of one chain of a ruleset, stripped."""
    lines = text.splitlines()
    start = lines.index(f"  chain {name} {{")
    end = lines.index("  }", start)
    return [line.strip() for line in lines[start + 1 : end]]


def firewall_chain(text: str, name: str) -> list[str]:
    """The rules of one chain of the firewall table."""
    return chain(text[text.index("table inet nubis_firewall {") :], name)


def test_both_tables_are_replaced_in_one_script() -> None:
    text = ruleset([A])
    assert text.startswith(
        "table bridge nubis_guard\ndelete table bridge nubis_guard\n"
        "table inet nubis_firewall\ndelete table inet nubis_firewall\n"
        "table bridge nubis_guard {\n"
    )
    assert text.count("table bridge nubis_guard {") == 1
    assert text.count("table inet nubis_firewall {") == 1


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
        ("address", "fd00::1%x } accept"),
        ("address", "FD00::1"),
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


def test_removal_works_whether_or_not_the_tables_exist() -> None:
    assert removal() == (
        "table bridge nubis_guard\ndelete table bridge nubis_guard\n"
        "table inet nubis_firewall\ndelete table inet nubis_firewall\n"
    )


# Project networks' NICs


def test_a_project_network_s_nic_carries_ipv6_only() -> None:
    rules = chain(ruleset([P]), "from_ntp")
    assert rules == [
        "meta mark set 0x00000333",
        "ether saddr != 02:cc:00:00:00:03 drop",
        "ether type ip6 jump from_ntp_ip6",
        "drop",
    ]
    assert "chain from_ntp_arp {" not in ruleset([P])


def test_a_project_network_s_nic_has_the_same_ipv6_guard() -> None:
    assert chain(ruleset([P]), "from_ntp_ip6") == [
        "ip6 saddr != { fd00:5:6:7:cc:ff:fe00:3, fe80::cc:ff:fe00:3, :: } drop",
        "ip6 saddr :: meta l4proto != ipv6-icmp drop",
        "ip6 saddr :: icmpv6 type != { nd-neighbor-solicit, mld2-listener-report } drop",
        "icmpv6 type { nd-router-advert, nd-redirect } drop",
        "icmpv6 type nd-neighbor-advert @th,64,128 != "
        "{ 0xfd0000050006000700cc00fffe000003, 0xfe8000000000000000cc00fffe000003 } drop",
        "udp sport 547 drop",
        "accept",
    ]


def test_a_nic_without_an_address_speaks_only_from_its_link_local_address() -> None:
    rules = chain(ruleset([Q]), "from_ntq_ip6")
    assert rules[0] == "ip6 saddr != { fe80::dd:ff:fe00:4, :: } drop"
    assert (
        "icmpv6 type nd-neighbor-advert @th,64,128 != { 0xfe8000000000000000dd00fffe000004 } drop"
    ) in rules


def test_the_host_s_frames_never_cross_a_vxlan_port_either_way() -> None:
    text = ruleset([A, P])
    assert chain(text, "output")[-1] == 'oifname "nx*" drop'
    assert chain(text, "input")[-1] == 'iifname "nx*" drop'


def test_only_host_network_taps_get_the_metadata_check() -> None:
    text = ruleset([A, P])
    assert chain(text, "output")[1] == 'oifname vmap { "nta" : jump to_nta }'
    assert "jump to_ntp" not in text.split("table inet nubis_firewall {")[0]


def test_what_the_host_sends_into_a_project_bridge_goes_through_its_firewall() -> None:
    text = ruleset([A, P, Q])
    for hook in ("forward", "output"):
        assert firewall_chain(text, hook)[1] == 'oifname vmap { "nbp" : jump into_nbp }'
    assert firewall_chain(text, "into_nbp") == [
        'iifname "nbp" accept',
        "ct state established,related accept",
        "icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, "
        "parameter-problem, mld-listener-query, mld-listener-report, mld-listener-done, "
        "mld2-listener-report, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept",
        "ip6 daddr vmap { fd00:5:6:7:cc:ff:fe00:3 : jump to_ntp, fe80::cc:ff:fe00:3 : jump to_ntp, "
        "fe80::dd:ff:fe00:4 : jump to_ntq }",
        "drop",
    ]
    assert firewall_chain(text, "to_ntp") == ["tcp dport 22 accept", "drop"]
    assert firewall_chain(text, "to_ntq") == ["drop"]


def test_without_project_networks_the_firewall_table_is_empty() -> None:
    text = ruleset([A])
    assert firewall_chain(text, "forward") == [
        "type filter hook forward priority 0; policy accept;"
    ]
    assert "into_" not in text


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (FirewallRule(protocol="tcp", port_min=22, source="::/0"), "tcp dport 22 accept"),
        (
            FirewallRule(protocol="udp", port_min=1000, port_max=2000, source="fd00::1/8"),
            "ip6 saddr fd00::/8 udp dport 1000-2000 accept",
        ),
        (
            FirewallRule(protocol="tcp", source="2001:db8::/32"),
            "ip6 saddr 2001:db8::/32 meta l4proto tcp accept",
        ),
        (FirewallRule(protocol="icmp", source="::/0"), "meta l4proto ipv6-icmp accept"),
        (FirewallRule(protocol="any", source="fd01::/16"), "ip6 saddr fd01::/16 accept"),
        (FirewallRule(protocol="any", source="::/0"), "accept"),
    ],
)
def test_each_rule_opens_what_it_says(rule: FirewallRule, expected: str) -> None:
    assert Opening.of(rule).rule() == expected


@pytest.mark.parametrize(
    "fields",
    [
        {"protocol": "sctp", "port_min": None, "port_max": None, "source": "::/0"},
        {"protocol": "icmp", "port_min": 1, "port_max": 1, "source": "::/0"},
        {"protocol": "tcp", "port_min": 9, "port_max": 8, "source": "::/0"},
        {"protocol": "tcp", "port_min": None, "port_max": None, "source": "10.0.0.0/8"},
        {"protocol": "tcp", "port_min": None, "port_max": None, "source": "::/0 accept"},
        {"protocol": "tcp", "port_min": None, "port_max": None, "source": "fd00::1/8"},
        {"protocol": "tcp", "port_min": None, "port_max": None, "source": "fd00::%x } accept/8"},
    ],
)
def test_no_unchecked_opening_reaches_the_script(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Opening(**fields)  # type: ignore[arg-type]


def test_a_project_nic_needs_its_bridge() -> None:
    with pytest.raises(ValueError):
        GuardedNic(tap="ntp", mac=P.mac, address=None, mark=1, openings=())
    with pytest.raises(ValueError):
        GuardedNic(tap="ntp", mac=P.mac, address=None, mark=1, openings=(), bridge="br0")
    with pytest.raises(ValueError):
        GuardedNic(tap="ntp", mac=P.mac, address=None, mark=1)


def test_two_nics_claiming_one_address_in_a_network_are_refused() -> None:
    twin = GuardedNic(tap="ntr", mac=P.mac, address=None, mark=1, openings=(), bridge="nbp")
    with pytest.raises(ValueError):
        ruleset([P, twin])


IMAGE = ImageRef(id="img-1", sha256="0" * 64, size_bytes=1, virtual_size_bytes=1)
NETWORK = Network(
    id="net-1",
    bridge="nbnet1",
    vxlan="nxnet1",
    vni=7,
    ipam=Ipam.AUTO,
    prefix="fd00:5:6:7::/64",
    gateway="fd00:5:6:7::1",
    mac="02:00:00:00:07:01",
    rules=[FirewallRule(protocol="tcp", port_min=80, source="::/0")],
)


def project_vm(network: str = "net-1") -> VmSpec:
    return VmSpec(
        id="vm-p",
        hostname="p",
        cores=1,
        memory_bytes=1,
        disk_bytes=1,
        image=IMAGE,
        running=True,
        reboots=0,
        nics=[
            Nic(tap="ntp0", number=0, mac="02:00:00:00:00:01", address="fd00::1"),
            Nic(
                tap="ntp1",
                number=1,
                mac="02:00:00:00:00:02",
                address="fd00:5:6:7::2",
                network=network,
            ),
        ],
        ssh_keys=[],
        rules=[FirewallRule(protocol="udp", port_min=53, port_max=53, source="fd00::/8")],
    )


def test_a_project_nic_is_opened_by_its_network_s_rules_then_its_vm_s() -> None:
    host_nic, project_nic = guarded([project_vm()], [NETWORK])
    assert host_nic.openings is None and host_nic.bridge is None
    assert project_nic.bridge == "nbnet1"
    assert project_nic.openings == (
        Opening("tcp", 80, 80, "::/0"),
        Opening("udp", 53, 53, "fd00::/8"),
    )


def test_a_nic_in_a_network_that_is_not_desired_is_refused() -> None:
    with pytest.raises(ValueError):
        guarded([project_vm("net-2")], [NETWORK])


@needs_nft
@pytest.mark.parametrize(
    "nics",
    [[], [A], [A, B], [P], [Q], [A, P, Q]],
    ids=["empty", "host", "hosts", "project", "no-address", "all"],
)
def test_nft_accepts_the_ruleset(nics: list[GuardedNic]) -> None:
    check(ruleset(nics))


@needs_nft
def test_nft_accepts_a_ruleset_with_every_kind_of_rule() -> None:
    rules = [
        FirewallRule(protocol="tcp", port_min=22, source="::/0"),
        FirewallRule(protocol="udp", port_min=1000, port_max=2000, source="fd00::/8"),
        FirewallRule(protocol="icmp", source="2001:db8::/32"),
        FirewallRule(protocol="any", source="fd01::/16"),
        FirewallRule(protocol="tcp", source="::/0"),
    ]
    network = NETWORK.model_copy(update={"rules": rules})
    check(ruleset(guarded([project_vm()], [network])))


@needs_nft
def test_nft_accepts_the_removal() -> None:
    check(removal())


def test_check_reports_what_nft_refuses() -> None:
    if shutil.which("nft") is None or os.geteuid() != 0:
        pytest.skip("needs root and nft")
    with pytest.raises(RuntimeError, match="nft refused"):
        check("table bridge nubis_guard { chain x { nonsense } }")
    assert (
        subprocess.run(["nft", "list", "tables"], capture_output=True, check=False).returncode == 0
    )

"""The guard's ruleset as data: what it refuses to be made of, and that nft takes it.

What the ruleset does to frames is proven by sending frames: tests/e2e/test_host_network.py
and tests/e2e/test_project_network.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from nubis.addresses import mark_of
from nubis.agent.net.guard import (
    GuardedNic,
    Opening,
    Underlay,
    check,
    guarded,
    removal,
    ruleset,
)
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


# Project networks' NICs


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
@pytest.mark.parametrize(
    "underlay",
    [
        Underlay(),
        Underlay(("fd00::2",), ("fd00::2", "fd00::3")),
        Underlay(("10.0.0.2", "fd00::2"), ("10.0.0.2", "10.0.0.3", "fd00::2")),
    ],
    ids=["alone", "ipv6", "both"],
)
def test_nft_accepts_the_ruleset_with_any_underlay(underlay: Underlay) -> None:
    check(ruleset([A, P, Q], underlay))


@pytest.mark.parametrize(
    "address", ["fd00::2 } accept", "FD00::2", "fe80::1%ul0", "10.0.0.2/8", "fd00:0::2"]
)
def test_no_unchecked_underlay_address_reaches_the_script(address: str) -> None:
    with pytest.raises(ValueError):
        Underlay((address,), ())
    with pytest.raises(ValueError):
        Underlay((), (address,))


def test_the_underlay_takes_vxlan_from_the_remotes_and_keeps_vms_off_every_known_host() -> None:
    a = NETWORK.model_copy(update={"remotes": ["fd00::3", "fd00::2"]})
    b = NETWORK.model_copy(update={"id": "net-2", "remotes": ["fd00::2", "10.0.0.9"]})
    assert Underlay.of([a, b], ["fd00::7", "fd00::2"]) == Underlay(
        remotes=("10.0.0.9", "fd00::2", "fd00::3"),
        hosts=("10.0.0.9", "fd00::2", "fd00::3", "fd00::7"),
    )


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

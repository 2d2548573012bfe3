"""Which bridge each tap belongs to (the rest of `networks` runs in tests/e2e)."""

from __future__ import annotations

import pytest

from nubis.agent.net.networks import ports
from nubis.protocol import Desired, HostNetwork, Ipam, Network, Nic
from tests.unit.agent.vm_specs import nic, vm_spec

HOST = HostNetwork(bridge="nbvm", prefix="fd00:1::/64", gateway="fd00:1::1")
NETWORK = Network(
    id="net-1",
    bridge="nbnet1",
    vxlan="nxnet1",
    vni=7,
    ipam=Ipam.NONE,
    mac="02:00:00:00:07:01",
    mtu=1400,
)


def project_nic(network: str = "net-1", mtu: int | None = None) -> Nic:
    return Nic(
        tap="ntweb1p", number=1, mac="02:aa:00:00:00:02", address=None, network=network, mtu=mtu
    )


def desired(*nics: Nic) -> Desired:
    return Desired(revision=1, network=HOST, networks=[NETWORK], vms=[vm_spec(nics=list(nics))])


def test_nic_0_is_a_port_of_the_host_network_s_bridge() -> None:
    assert ports(desired(nic(0))) == {"ntweb1n0": ("nbvm", None)}


def test_a_project_nic_is_a_port_of_its_network_s_bridge_with_its_mtu() -> None:
    assert ports(desired(nic(0), project_nic()))["ntweb1p"] == ("nbnet1", 1400)


def test_a_nic_s_own_mtu_comes_first() -> None:
    assert ports(desired(project_nic(mtu=1300)))["ntweb1p"] == ("nbnet1", 1300)


def test_a_nic_in_a_network_that_is_not_desired_is_refused() -> None:
    with pytest.raises(ValueError):
        ports(desired(project_nic(network="net-2")))


def test_no_vms_no_ports() -> None:
    assert ports(Desired(revision=1, network=HOST, vms=[])) == {}

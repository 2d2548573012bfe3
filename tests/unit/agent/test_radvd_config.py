from __future__ import annotations

import os
from pathlib import Path

import pytest

from nubis.agent.net.radvd import Announcement, Radvd, bridges, config
from nubis.protocol import HostNetwork, Ipam, Network

NETWORK = HostNetwork(
    bridge="nbhost", prefix="fd12:3456:789a:1::/64", gateway="fd12:3456:789a:1::1"
)


def test_the_config_announces_the_prefix_for_slaac_on_the_bridge() -> None:
    assert config(NETWORK) == (
        "interface nbhost {\n"
        "    AdvSendAdvert on;\n"
        "    MinRtrAdvInterval 3;\n"
        "    MaxRtrAdvInterval 10;\n"
        "    prefix fd12:3456:789a:1::/64 {\n"
        "        AdvOnLink on;\n"
        "        AdvAutonomous on;\n"
        "    };\n"
        "};\n"
    )


@pytest.mark.parametrize(
    "prefix", ["fd12:3456:789a::/48", "fd12:3456:789a:1::1/64", "fd12::%x;\n}/64"]
)
def test_the_config_refuses_a_prefix_slaac_cannot_use(prefix: str) -> None:
    with pytest.raises(ValueError):
        config(NETWORK.model_copy(update={"prefix": prefix}))


def test_radvd_s_files_are_named_after_its_bridge(tmp_path: Path) -> None:
    radvd = Radvd(tmp_path, "nbhost")
    assert radvd.config_path == tmp_path / "radvd-nbhost.conf"
    assert radvd.pidfile == tmp_path / "radvd-nbhost.pid"
    assert radvd.argv()[:3] == ["radvd", "--config", str(tmp_path / "radvd-nbhost.conf")]


def test_no_pidfile_means_not_running(tmp_path: Path) -> None:
    assert Radvd(tmp_path, "nbhost").pid() is None


def test_a_pidfile_naming_another_process_is_not_believed(tmp_path: Path) -> None:
    # As after a reboot, when the pid has gone to something else: here, this test.
    radvd = Radvd(tmp_path, "nbhost")
    radvd.pidfile.write_text(f"{os.getpid()}\n")
    assert radvd.pid() is None
    assert radvd.stop() is False
    assert not radvd.pidfile.exists()


def test_a_garbled_pidfile_is_not_believed(tmp_path: Path) -> None:
    radvd = Radvd(tmp_path, "nbhost")
    radvd.pidfile.write_text("not a pid")
    assert radvd.pid() is None


def test_ensure_refuses_another_bridge_s_network(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Radvd(tmp_path, "nbother").ensure(NETWORK)


def test_bridges_lists_those_with_a_config(tmp_path: Path) -> None:
    (tmp_path / "radvd-nba.conf").write_text("")
    (tmp_path / "radvd-nbb.conf").write_text("")
    (tmp_path / "radvd-nbb.pid").write_text("1")
    assert bridges(tmp_path) == ["nba", "nbb"]


PROJECT = Network(
    id="net-1",
    bridge="nbnet1",
    vxlan="nxnet1",
    vni=7,
    ipam=Ipam.AUTO,
    prefix="fd00:5:6:7::/64",
    gateway="fd00:5:6:7::1",
    mac="02:00:00:00:07:01",
)


def test_a_project_network_s_config_announces_its_link_mtu() -> None:
    text = config(PROJECT)
    assert text.startswith("interface nbnet1 {\n")
    assert "    AdvLinkMTU 1430;\n" in text
    assert "    prefix fd00:5:6:7::/64 {\n" in text


def test_the_host_network_announces_no_mtu() -> None:
    assert "AdvLinkMTU" not in config(NETWORK)


def test_only_the_host_network_makes_the_host_a_default_router() -> None:
    assert "AdvDefaultLifetime" not in config(NETWORK)
    assert "    AdvDefaultLifetime 0;\n" in config(PROJECT)


def test_an_announcement_is_a_bridge_a_prefix_and_an_mtu() -> None:
    expected = Announcement("nbnet1", "fd00:5:6:7::/64", 1430, default_router=False)
    assert Announcement.of(PROJECT) == expected
    assert config(Announcement("nbx", "fd00:1::/64", 9000, default_router=False)) == config(
        PROJECT.model_copy(update={"bridge": "nbx", "prefix": "fd00:1::/64", "mtu": 9000})
    )


def test_a_network_without_a_prefix_has_nothing_to_announce() -> None:
    with pytest.raises(ValueError):
        config(PROJECT.model_copy(update={"ipam": Ipam.NONE, "prefix": None, "gateway": None}))


@pytest.mark.parametrize(("bridge", "mtu"), [("eth0", None), ("nbx {", None), ("nbx", 1000)])
def test_an_announcement_takes_only_checked_values(bridge: str, mtu: int | None) -> None:
    with pytest.raises(ValueError):
        Announcement(bridge, "fd00::/64", mtu)

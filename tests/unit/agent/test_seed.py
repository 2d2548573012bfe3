"""The cloud-init NoCloud seed: what each file says, and the FAT image that holds them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from nubis.agent import seed
from nubis.protocol import Ipam, Nic
from tests.unit.agent.vm_specs import MANUAL, nic, vm_spec

MTOOLS = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
needs_tools = pytest.mark.skipif(
    not (shutil.which("mkfs.vfat") and shutil.which("mcopy")), reason="needs dosfstools, mtools"
)


def test_meta_data_names_the_instance_after_the_vm() -> None:
    spec = vm_spec()
    meta = json.loads(seed.meta_data(spec))
    assert meta["instance-id"] == spec.id
    assert meta["local-hostname"] == spec.hostname


def test_meta_data_carries_the_ssh_keys() -> None:
    keys = ["ssh-ed25519 AAAA1 a@b", "ssh-rsa AAAA2 c: d # not a comment"]
    assert json.loads(seed.meta_data(vm_spec(ssh_keys=keys)))["public-keys"] == keys


def test_the_users_user_data_is_passed_as_it_is() -> None:
    text = "#!/bin/sh\necho hello\n"
    assert seed.user_data(vm_spec(user_data=text)) == text


@pytest.mark.parametrize("given", [None, ""])
def test_without_user_data_an_empty_cloud_config_is_given(given: str | None) -> None:
    text = seed.user_data(vm_spec(user_data=given))
    assert text.startswith("#cloud-config\n")


def test_a_vm_without_nics_has_no_network_config() -> None:
    assert seed.network_config(vm_spec(nics=[])) is None
    assert "network-config" not in seed.files(vm_spec(nics=[]))


def test_each_nic_is_found_by_its_mac_and_set_up_from_router_advertisements() -> None:
    nics = [nic(0), nic(1)]
    text = seed.network_config(vm_spec(nics=nics))
    assert text is not None
    config = json.loads(text)
    assert config["version"] == 2
    ethernets = list(config["ethernets"].values())
    assert [e["match"]["macaddress"] for e in ethernets] == [n.mac for n in nics]
    assert [e["addresses"] for e in ethernets] == [[f"{n.address}/64"] for n in nics]
    assert all(e["accept-ra"] and not e["dhcp4"] for e in ethernets)


def test_the_seed_is_big_enough_for_a_large_user_data() -> None:
    contents = seed.files(vm_spec(user_data="#cloud-config\n" + "x" * 5_000_000))
    assert seed.size_kib(contents) * 1024 > 5_000_000


def mtools(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True, env=MTOOLS, check=True).stdout


def read_back(image: Path, name: str) -> str:
    return mtools("mtype", "-i", str(image), f"::{name}")


@needs_tools
def test_the_seed_image_is_labelled_cidata_and_holds_the_files(tmp_path: Path) -> None:
    spec = vm_spec(nics=[nic(0)], user_data="#cloud-config\nruncmd: [true]\n")
    image = seed.write_seed(spec, tmp_path / "seed.img")
    assert "CIDATA" in mtools("mlabel", "-s", "-i", str(image), "::")
    for name, text in seed.files(spec).items():
        assert read_back(image, name) == text
    assert image.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed.img"]


@needs_tools
def test_writing_a_seed_again_replaces_it(tmp_path: Path) -> None:
    path = tmp_path / "seed.img"
    seed.write_seed(vm_spec(hostname="old"), path)
    seed.write_seed(vm_spec(hostname="new"), path)
    assert json.loads(read_back(path, "meta-data"))["local-hostname"] == "new"


def ethernet_of(ipam: Ipam, address: str | None) -> dict[str, object]:
    project = Nic(
        tap="ntweb1p",
        number=1,
        mac="02:aa:00:00:00:02",
        address=address,
        network="net-m" if ipam is Ipam.MANUAL else "net-x",
        ipam=ipam,
        mtu=1430,
    )
    text = seed.network_config(vm_spec(nics=[nic(0), project]), {MANUAL.id: MANUAL}.get)
    assert text is not None
    ethernet: dict[str, object] = json.loads(text)["ethernets"]["nic1"]
    return ethernet


def test_an_auto_network_s_nic_takes_router_advertisements_and_its_address() -> None:
    ethernet = ethernet_of(Ipam.AUTO, "fd00:9::a")
    assert ethernet["accept-ra"] is True
    assert ethernet["addresses"] == ["fd00:9::a/64"]
    assert ethernet["mtu"] == 1430


def test_a_manual_network_s_nic_gets_its_address_and_the_gateway_without_ras() -> None:
    ethernet = ethernet_of(Ipam.MANUAL, "fd00:8::a")
    assert ethernet["accept-ra"] is False
    assert ethernet["addresses"] == ["fd00:8::a/64"]
    assert ethernet["routes"] == [{"to": "::/0", "via": "fd00:8::1"}]


def test_a_nic_without_ipam_has_no_address() -> None:
    ethernet = ethernet_of(Ipam.NONE, None)
    assert ethernet["accept-ra"] is False
    assert "addresses" not in ethernet
    assert "routes" not in ethernet
    assert ethernet["mtu"] == 1430


def test_the_host_network_s_nic_sets_no_mtu() -> None:
    text = seed.network_config(vm_spec(nics=[nic(0)]))
    assert text is not None
    assert "mtu" not in json.loads(text)["ethernets"]["nic0"]

"""What the metadata service answers a VM, path by path: EC2's and OpenStack's, and
network_data.json for each kind of NIC."""

from __future__ import annotations

import json

import pytest

from nubis.agent.net.metadata_answers import answer, network_data
from nubis.protocol import ImageRef, Ipam, Nic, VmSpec
from tests.unit.agent.vm_specs import MANUAL

IMAGE = ImageRef(id="img-1", sha256="0" * 64, size_bytes=1, virtual_size_bytes=1)
KEYS = ["ssh-ed25519 AAAAC3Nz first@example", "ssh-ed25519 AAAAC3Nz second@example"]


def vm(
    vm_id: str = "vm-web1", ssh_keys: list[str] | None = None, user_data: str | None = None
) -> VmSpec:
    return VmSpec(
        id=vm_id,
        hostname="web1",
        cores=1,
        memory_bytes=1,
        disk_bytes=1,
        image=IMAGE,
        running=True,
        reboots=0,
        nics=[
            Nic(tap="ntweb1", number=0, mac="02:aa:00:00:00:01", address="fd00:1:2:3:aa:ff:fe00:1")
        ],
        ssh_keys=KEYS if ssh_keys is None else ssh_keys,
        user_data=user_data,
    )


def get(path: str, spec: VmSpec | None = None) -> tuple[int, str]:
    result = answer("GET", path, vm() if spec is None else spec)
    return result.status, result.body.decode()


@pytest.mark.parametrize(
    "path", ["/", "/latest/meta-data/instance-id", "/openstack/latest/meta_data.json"]
)
def test_a_port_no_vm_is_known_on_gets_nothing(path: str) -> None:
    result = answer("GET", path, None)
    assert result.status == 403
    assert b"vm-" not in result.body


def test_ec2_meta_data_lists_what_it_has() -> None:
    assert get("/latest/meta-data/") == (
        200,
        "hostname\ninstance-id\nlocal-hostname\npublic-keys/\n",
    )


def test_ec2_meta_data_lists_no_keys_when_there_are_none() -> None:
    assert (
        get("/latest/meta-data/", vm(ssh_keys=[]))[1] == "hostname\ninstance-id\nlocal-hostname\n"
    )
    assert get("/latest/meta-data/public-keys/", vm(ssh_keys=[]))[0] == 404


def test_ec2_instance_id_and_hostnames() -> None:
    assert get("/latest/meta-data/instance-id") == (200, "vm-web1")
    assert get("/latest/meta-data/hostname") == (200, "web1")
    assert get("/latest/meta-data/local-hostname") == (200, "web1")


def test_ec2_public_keys_are_listed_by_index_and_served_as_openssh_keys() -> None:
    assert get("/latest/meta-data/public-keys/") == (200, "0=key-0\n1=key-1\n")
    assert get("/latest/meta-data/public-keys/1/") == (200, "openssh-key\n")
    assert get("/latest/meta-data/public-keys/0/openssh-key") == (200, KEYS[0])
    assert get("/latest/meta-data/public-keys/1/openssh-key") == (200, KEYS[1])
    assert get("/latest/meta-data/public-keys/2/openssh-key")[0] == 404


def test_a_dated_ec2_version_answers_like_latest() -> None:
    # cloud-init asks for /2009-04-04/... (or newer) rather than /latest/.
    assert get("/2009-04-04/meta-data/instance-id") == get("/latest/meta-data/instance-id")
    assert get("/2021-03-23/meta-data/public-keys/") == get("/latest/meta-data/public-keys/")


def test_user_data_is_404_when_the_vm_has_none() -> None:
    assert get("/latest/user-data")[0] == 404
    assert get("/openstack/latest/user_data")[0] == 404
    assert get("/latest/")[1] == "meta-data/\n"


def test_user_data_is_served_as_given() -> None:
    spec = vm(user_data="#cloud-config\nruncmd: [true]\n")
    result = answer("GET", "/latest/user-data", spec)
    assert (result.status, result.body) == (200, b"#cloud-config\nruncmd: [true]\n")
    assert result.content_type == "application/octet-stream"
    assert answer("GET", "/openstack/2012-08-10/user_data", spec).body == result.body
    assert get("/latest", spec)[1] == "meta-data/\nuser-data\n"


def test_openstack_lists_its_versions() -> None:
    assert get("/openstack") == (200, "latest\n")
    assert get("/openstack/") == (200, "latest\n")
    assert get("/openstack/latest/") == (200, "meta_data.json\nnetwork_data.json\n")


def test_openstack_meta_data_names_the_vm_and_its_keys() -> None:
    result = answer("GET", "/openstack/latest/meta_data.json", vm())
    assert result.content_type == "application/json"
    assert json.loads(result.body) == {
        "uuid": "vm-web1",
        "name": "web1",
        "hostname": "web1",
        "public_keys": {"key-0": KEYS[0], "key-1": KEYS[1]},
    }


def test_openstack_network_data_gives_each_nic_its_slaac_address() -> None:
    status, body = get("/openstack/latest/network_data.json")
    assert status == 200
    assert json.loads(body) == {
        "links": [{"id": "ntweb1", "type": "phy", "ethernet_mac_address": "02:aa:00:00:00:01"}],
        "networks": [
            {
                "id": "network0",
                "link": "ntweb1",
                "network_id": "fd00:1:2:3::/64",
                "type": "ipv6_slaac",
                "ip_address": "fd00:1:2:3:aa:ff:fe00:1",
                "netmask": "ffff:ffff:ffff:ffff::",
            }
        ],
        "services": [],
    }


@pytest.mark.parametrize(
    "path",
    ["/latest/meta-data/nothing", "/latest/nothing", "/openstack/latest/nothing", "/nothing"],
)
def test_an_unknown_path_is_404(path: str) -> None:
    assert get(path)[0] == 404


def test_a_query_string_is_ignored() -> None:
    assert get("/latest/meta-data/instance-id?x=1") == (200, "vm-web1")


def test_an_imdsv2_token_is_handed_out_but_never_needed() -> None:
    result = answer("PUT", "/latest/api/token", vm())
    assert result.status == 200
    assert len(result.body) >= 32
    assert get("/latest/meta-data/instance-id")[0] == 200


@pytest.mark.parametrize(("method", "path"), [("POST", "/latest/meta-data/"), ("PUT", "/latest/")])
def test_nothing_is_written(method: str, path: str) -> None:
    assert answer(method, path, vm()).status == 405


def test_head_answers_like_get() -> None:
    assert answer("HEAD", "/latest/meta-data/hostname", vm()) == answer(
        "GET", "/latest/meta-data/hostname", vm()
    )


def project_nic(ipam: Ipam, address: str | None, network: str = "net-m") -> Nic:
    return Nic(
        tap="ntweb1p",
        number=1,
        mac="02:aa:00:00:00:02",
        address=address,
        network=network,
        ipam=ipam,
        mtu=1430,
    )


def network_data_of(nic: Nic) -> dict[str, object]:
    spec = vm().model_copy(update={"nics": [*vm().nics, nic]})
    data = network_data(spec, {MANUAL.id: MANUAL}.get)
    return {"link": data["links"][1], "networks": data["networks"][1:]}


def test_a_project_nic_s_link_carries_its_mtu() -> None:
    assert network_data_of(project_nic(Ipam.NONE, None))["link"] == {
        "id": "ntweb1p",
        "type": "phy",
        "ethernet_mac_address": "02:aa:00:00:00:02",
        "mtu": 1430,
    }


def test_an_auto_network_s_nic_is_configured_by_slaac() -> None:
    nic = project_nic(Ipam.AUTO, "fd00:9::a", network="net-a")
    assert network_data_of(nic)["networks"] == [
        {
            "id": "network1",
            "link": "ntweb1p",
            "network_id": "net-a",
            "type": "ipv6_slaac",
            "ip_address": "fd00:9::a",
            "netmask": "ffff:ffff:ffff:ffff::",
        }
    ]


def test_a_manual_network_s_nic_is_told_its_address_and_gateway() -> None:
    assert network_data_of(project_nic(Ipam.MANUAL, "fd00:8::a"))["networks"] == [
        {
            "id": "network1",
            "link": "ntweb1p",
            "network_id": "net-m",
            "type": "ipv6",
            "ip_address": "fd00:8::a",
            "netmask": "ffff:ffff:ffff:ffff::",
            "routes": [{"network": "::", "netmask": "::", "gateway": "fd00:8::1"}],
        }
    ]


def test_an_auto_network_s_nic_is_told_its_way_out_for_replies() -> None:
    auto = MANUAL.model_copy(update={"ipam": Ipam.AUTO})
    spec = vm().model_copy(update={"nics": [*vm().nics, project_nic(Ipam.AUTO, "fd00:8::a")]})
    (entry,) = network_data(spec, {auto.id: auto}.get)["networks"][1:]
    assert entry["type"] == "ipv6_slaac"
    assert entry["routes"] == [{"network": "::", "netmask": "::", "gateway": "fd00:8::1"}]


def test_a_nic_without_ipam_gets_only_its_link() -> None:
    assert network_data_of(project_nic(Ipam.NONE, None))["networks"] == []


def test_network_data_is_served_with_the_gateway() -> None:
    spec = vm().model_copy(update={"nics": [*vm().nics, project_nic(Ipam.MANUAL, "fd00:8::a")]})
    result = answer("GET", "/openstack/latest/network_data.json", spec, {MANUAL.id: MANUAL}.get)
    assert json.loads(result.body)["networks"][1]["routes"][0]["gateway"] == "fd00:8::1"

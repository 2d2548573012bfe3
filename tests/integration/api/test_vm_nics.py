"""VMs in project networks: their NICs (numbered, with stable MACs and EUI-64
addresses), NICs added and removed, and what each host is told to build for them:
bridges, VXLANs and who floods to whom."""

from __future__ import annotations

import ipaddress

import pytest
from fastapi.testclient import TestClient

from nubis import networks
from nubis.addresses import eui64_address, stable_mac
from nubis.config import Settings
from nubis.db import Database
from nubis.engine.dispatcher import Dispatcher
from nubis.protocol import NETWORK_MTU, Desired, FdbEntry, Ipam, VmSpec
from tests.integration.api import fleet
from tests.integration.api.host_agent import Agent
from tests.integration.api.people import People, Person, problem
from tests.integration.engine.helpers import drain


@pytest.fixture
def alice(people: People) -> Person:
    return people.user("alice")


@pytest.fixture
def project(people: People, alice: Person, db: Database) -> str:
    return fleet.project_with_image(people, db, alice)


@pytest.fixture
def second(agent: Agent, client: TestClient, db: Database) -> Agent:
    """A second host of `fra1`, at fd00::2 (the first is at fd00::1)."""
    return fleet.join(client, db, "h2", "fd00::2")


@pytest.fixture
def dispatcher(db: Database) -> Dispatcher:
    return Dispatcher(db, Settings(lease_seconds=30))


def _vms(project: str) -> str:
    return f"/v1/projects/{project}/vms"


def _spec_of(desired: Desired, vm_id: str) -> VmSpec:
    return next(spec for spec in desired.vms if spec.id == vm_id)


def test_a_vm_made_with_networks_has_a_nic_in_each_at_its_eui64_address(
    alice: Person, project: str, agent: Agent
) -> None:
    back = fleet.network(alice, project, "back")
    plain = fleet.network(alice, project, "plain", ipam="none")

    vm = fleet.vm(alice, project, "web1", networks=["back", plain["id"]])

    host_nic, back_nic, plain_nic = vm["nics"]
    assert [n["number"] for n in vm["nics"]] == [0, 1, 2]
    assert (host_nic["network"], host_nic["network_name"]) == (None, None)
    assert (back_nic["network"], back_nic["network_name"]) == (back["id"], "back")
    assert (plain_nic["network"], plain_nic["network_name"]) == (plain["id"], "plain")
    assert back_nic["mac"] == stable_mac(vm["id"], 1)
    assert back_nic["address"] == eui64_address(back["prefix"], back_nic["mac"])
    assert plain_nic["address"] is None
    desired = agent.desired()
    spec = _spec_of(desired, vm["id"])
    assert [(n.number, n.network, n.ipam, n.mtu) for n in spec.nics] == [
        (0, None, Ipam.AUTO, None),
        (1, back["id"], Ipam.AUTO, NETWORK_MTU),
        (2, plain["id"], Ipam.NONE, NETWORK_MTU),
    ]
    assert [n.address for n in spec.nics][1:] == [back_nic["address"], None]
    assert len({n.tap for n in spec.nics}) == 3
    by_id = {n.id: n for n in desired.networks}
    assert set(by_id) == {back["id"], plain["id"]}
    wire = by_id[back["id"]]
    assert (wire.vni, wire.ipam, wire.prefix, wire.gateway) == (
        back["vni"], Ipam.AUTO, back["prefix"], back["gateway"],
    )  # fmt: skip
    assert wire.bridge == "nb" + back["id"][-12:] and wire.vxlan == "nx" + back["id"][-12:]
    assert wire.mac == stable_mac(back["id"], 0)
    assert (wire.mtu, wire.group, wire.remotes, wire.rules) == (NETWORK_MTU, None, [], [])
    assert (by_id[plain["id"]].prefix, by_id[plain["id"]].gateway) == (None, None)


def test_a_nic_is_added_and_removed_and_the_vm_s_host_is_told(
    alice: Person, project: str, agent: Agent, db: Database
) -> None:
    back = fleet.network(alice, project, "back", ipam="manual")
    vm = fleet.vm(alice, project, "web1")
    before = fleet.revision(db, "h1")

    added = alice.post(f"{_vms(project)}/web1/nics", json={"network": "back"})

    assert added.status_code == 202, added.text
    nic = added.json()["nics"][1]
    assert (nic["number"], nic["network"], nic["network_name"]) == (1, back["id"], "back")
    assert ipaddress.IPv6Address(nic["address"]) in ipaddress.IPv6Network(back["prefix"])
    assert fleet.revision(db, "h1") > before
    spec = _spec_of(agent.desired(anyway=True), vm["id"])
    assert [n.network for n in spec.nics] == [None, back["id"]]
    again = problem(alice.post(f"{_vms(project)}/web1/nics", json={"network": "back"}), 409)
    assert again["detail"] == "VM web1 has a NIC in network back already"

    removed = alice.delete(f"{_vms(project)}/web1/nics/back")

    assert removed.status_code == 202, removed.text
    assert [n["number"] for n in removed.json()["nics"]] == [0]
    desired = agent.desired(anyway=True)
    assert [n.number for n in _spec_of(desired, vm["id"]).nics] == [0]
    assert desired.networks == []
    none = problem(alice.delete(f"{_vms(project)}/web1/nics/back"), 409)
    assert none["detail"] == "VM web1 has no NIC in network back"
    problem(alice.delete(f"{_vms(project)}/web1/nics/nosuch"), 404)
    problem(alice.post(f"{_vms(project)}/web9/nics", json={"network": "back"}), 404)


def test_a_nic_takes_the_lowest_free_number_and_a_vm_has_at_most_15(
    alice: Person, project: str, agent: Agent
) -> None:
    names = [fleet.network(alice, project, f"n{i}", ipam="none")["name"] for i in range(16)]
    fleet.vm(alice, project, "web1", networks=names[:15])
    path = f"{_vms(project)}/web1/nics"

    full = problem(alice.post(path, json={"network": names[15]}), 409)
    assert full["detail"] == "VM web1 has 15 project network NICs, the most it may"
    assert alice.delete(f"{path}/n3").status_code == 202

    vm = alice.post(path, json={"network": names[15]}).json()

    assert {n["number"]: n["network_name"] for n in vm["nics"]}[4] == "n15"
    too_many = {"name": "web2", "image": "tiny-web", "networks": names}
    problem(alice.post(_vms(project), json=too_many), 422)


def test_nics_of_a_vm_being_deleted_do_not_change(
    alice: Person, project: str, agent: Agent, dispatcher: Dispatcher
) -> None:
    fleet.network(alice, project, "back")
    fleet.vm(alice, project, "web1")
    assert alice.delete(f"{_vms(project)}/web1").status_code == 202
    drain(dispatcher)

    refused = problem(alice.post(f"{_vms(project)}/web1/nics", json={"network": "back"}), 409)

    assert refused["detail"] == "VM web1 is being deleted"


def test_a_network_of_another_location_or_named_twice_is_refused(
    alice: Person, project: str, agent: Agent, client: TestClient, db: Database
) -> None:
    fleet.join(client, db, "far", "fd00::9", location="ams1")
    fleet.network(alice, project, "away", location="ams1")
    fleet.network(alice, project, "back", location="fra1")
    body = {"name": "web1", "image": "tiny-web", "location": "fra1"}

    elsewhere = problem(alice.post(_vms(project), json={**body, "networks": ["away"]}), 422)
    twice = problem(alice.post(_vms(project), json={**body, "networks": ["back", "back"]}), 422)
    fleet.vm(alice, project, "web1", location="fra1")
    nic = problem(alice.post(f"{_vms(project)}/web1/nics", json={"network": "away"}), 422)

    assert elsewhere["detail"] == "network away is in another location than the VM"
    assert twice["detail"] == "network back is named twice: a VM has one NIC per network"
    assert nic["detail"] == "network away is in another location than VM web1"


def test_two_hosts_with_vms_in_a_network_flood_to_each_other_by_unicast(
    alice: Person, project: str, agent: Agent, second: Agent
) -> None:
    back = fleet.network(alice, project, "back")
    fleet.vm(alice, project, "web1", networks=["back"], group="g")
    fleet.vm(alice, project, "web2", networks=["back"], group="g")

    first, other = agent.desired(), second.desired()

    assert [(n.id, n.group, n.remotes) for n in first.networks] == [(back["id"], None, ["fd00::2"])]
    assert [(n.id, n.group, n.remotes) for n in other.networks] == [(back["id"], None, ["fd00::1"])]
    # Each is told where the other's NIC is: its VXLAN device learns nothing.
    (mine,) = [nic for vm in first.vms for nic in vm.nics if nic.network == back["id"]]
    (theirs,) = [nic for vm in other.vms for nic in vm.nics if nic.network == back["id"]]
    assert first.networks[0].fdb == [FdbEntry(mac=theirs.mac, remote="fd00::2")]
    assert other.networks[0].fdb == [FdbEntry(mac=mine.mac, remote="fd00::1")]
    assert first.networks[0].mac == other.networks[0].mac
    assert first.networks[0].gateway == other.networks[0].gateway == back["gateway"]


def test_multicast_flooding_gives_the_network_s_group_and_tells_the_hosts(
    alice: Person, project: str, agent: Agent, second: Agent, *, people: People, db: Database
) -> None:
    back = fleet.network(alice, project, "back")
    fleet.vm(alice, project, "web1", networks=["back"], group="g")
    fleet.vm(alice, project, "web2", networks=["back"], group="g")
    before = (fleet.revision(db, "h1"), fleet.revision(db, "h2"))
    operator = people.user("olga", operator=True)

    changed = operator.patch("/v1/admin/locations/fra1", json={"flooding": "multicast"})

    assert changed.status_code == 200, changed.text
    assert changed.json()["flooding"] == "multicast"
    assert fleet.revision(db, "h1") > before[0] and fleet.revision(db, "h2") > before[1]
    for host, other in ((agent, "fd00::2"), (second, "fd00::1")):
        (wire,) = host.desired(anyway=True).networks
        # The remotes stay: VXLAN is taken from them only.
        assert (wire.group, wire.remotes) == (networks.group(back["vni"]), [other])
    problem(alice.patch("/v1/admin/locations/fra1", json={"flooding": "unicast"}), 403)
    problem(operator.patch("/v1/admin/locations/fra1", json={"flooding": "broadcast"}), 422)
    problem(operator.patch("/v1/admin/locations/mars", json={"flooding": "unicast"}), 404)


def test_a_nic_change_or_a_deleted_vm_tells_the_other_hosts_of_the_network(
    alice: Person,
    project: str,
    agent: Agent,
    second: Agent,
    *,
    db: Database,
    dispatcher: Dispatcher,
) -> None:
    fleet.network(alice, project, "back")
    fleet.network(alice, project, "front")
    web1 = fleet.vm(alice, project, "web1", networks=["back"], group="g")
    fleet.vm(alice, project, "web2", networks=["back"], group="g")
    agents = {"h1": agent, "h2": second}
    one = fleet.host_name(db, web1["host"])
    two = "h2" if one == "h1" else "h1"
    one_address = "fd00::1" if one == "h1" else "fd00::2"

    before = fleet.revision(db, two)
    assert alice.post(f"{_vms(project)}/web1/nics", json={"network": "front"}).status_code == 202
    assert fleet.revision(db, two) == before  # web2 is not in `front`
    assert alice.delete(f"{_vms(project)}/web1/nics/back").status_code == 202
    assert fleet.revision(db, two) > before
    assert agents[two].desired(anyway=True).networks[0].remotes == []
    assert alice.post(f"{_vms(project)}/web1/nics", json={"network": "back"}).status_code == 202
    assert agents[two].desired(anyway=True).networks[0].remotes == [one_address]
    before = fleet.revision(db, two)

    assert alice.delete(f"{_vms(project)}/web1").status_code == 202
    drain(dispatcher)

    assert fleet.revision(db, two) > before
    assert agents[two].desired(anyway=True).networks[0].remotes == []
    assert agents[one].desired(anyway=True).networks == []
    agents[one].report()
    drain(dispatcher)
    problem(alice.get(f"{_vms(project)}/web1"), 404)
    assert alice.delete(f"/v1/projects/{project}/networks/front").status_code == 204

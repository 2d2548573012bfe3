"""Project networks through the API: made with a VNI and (with IPAM) a /64 of their
location, listed, shown, refused when they cannot be made, deleted once unused."""

from __future__ import annotations

import ipaddress
import secrets

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from nubis.db import Database
from nubis.ipam import vnis
from nubis.models import FirewallRule, Location, Membership, Network, Role, Subnet
from tests.integration.api import fleet
from tests.integration.api.host_agent import Agent
from tests.integration.api.people import People, Person, problem


@pytest.fixture
def alice(people: People) -> Person:
    return people.user("alice")


@pytest.fixture
def project(people: People, alice: Person, db: Database) -> str:
    return fleet.project_with_image(people, db, alice)


def networks(project: str) -> str:
    return f"/v1/projects/{project}/networks"


def test_a_network_is_made_listed_shown_and_deleted(
    alice: Person, project: str, agent: Agent
) -> None:
    made = fleet.network(alice, project, "back")

    assert made["id"].startswith("nw-")
    assert (made["name"], made["ipam"], made["location"]) == ("back", "auto", "fra1")
    assert 1 <= made["vni"] <= vnis.MAX_VNI
    prefix = ipaddress.IPv6Network(made["prefix"])
    assert prefix.prefixlen == 64 and prefix.subnet_of(ipaddress.IPv6Network("2001:db8:1::/48"))
    assert made["gateway"] == str(prefix.network_address + 1)
    path = networks(project)
    assert [n["id"] for n in alice.get(path).json()["items"]] == [made["id"]]
    assert alice.get(f"{path}/back").json() == made
    assert alice.get(f"{path}/{made['id']}").json() == made

    assert alice.delete(f"{path}/back").status_code == 204
    problem(alice.get(f"{path}/back"), 404)
    assert alice.get(path).json()["items"] == []


def test_ipam_none_has_no_prefix_and_manual_has_one(
    alice: Person, project: str, agent: Agent
) -> None:
    plain = fleet.network(alice, project, "plain", ipam="none")
    manual = fleet.network(alice, project, "manual", ipam="manual")

    assert (plain["ipam"], plain["prefix"], plain["gateway"]) == ("none", None, None)
    assert manual["ipam"] == "manual"
    assert ipaddress.IPv6Network(manual["prefix"]).prefixlen == 64


def test_names_are_unique_in_a_project_and_bad_input_is_refused(
    alice: Person, project: str, agent: Agent
) -> None:
    fleet.network(alice, project, "back")
    path = networks(project)

    taken = problem(alice.post(path, json={"name": "back"}), 409)
    badly_named = problem(alice.post(path, json={"name": "Back!"}), 422)
    bad_ipam = problem(alice.post(path, json={"name": "x", "ipam": "dhcp"}), 422)
    nowhere = problem(alice.post(path, json={"name": "x", "location": "mars"}), 404)

    assert taken["detail"] == "the project has a network named 'back' already"
    assert "name" in badly_named["errors"]
    assert "ipam" in bad_ipam["errors"]
    assert nowhere["detail"] == "no location 'mars'"


def test_vnis_are_drawn_at_random_and_unique_in_a_location(
    alice: Person, project: str, agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn = iter([41, 41, 99, 6])
    monkeypatch.setattr(secrets, "randbelow", lambda _bound: next(drawn))

    made = [fleet.network(alice, project, f"n{i}", ipam="none")["vni"] for i in range(3)]

    assert made == [42, 100, 7]


def test_a_deleted_network_s_vni_is_held_until_every_host_has_converged_past_it(
    alice: Person, project: str, agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = fleet.network(alice, project, "old", ipam="none")
    fleet.vm(alice, project, "web1", networks=["old"])
    agent.desired()
    agent.send({})
    assert alice.delete(f"/v1/projects/{project}/vms/web1/nics/old").status_code == 202
    # The NIC's row is gone; its host has not yet been told, and may still bridge it.
    assert alice.delete(f"{networks(project)}/old").status_code == 204
    draws = [old["vni"] - 1, 9]
    monkeypatch.setattr(secrets, "randbelow", lambda _bound: draws.pop(0))

    assert fleet.network(alice, project, "new", ipam="none")["vni"] == 10

    agent.desired()
    agent.send({})  # converged to the state without the NIC
    draws[:] = [old["vni"] - 1]
    assert fleet.network(alice, project, "newer", ipam="none")["vni"] == old["vni"]


def test_a_network_s_64_is_no_host_s_and_no_other_network_s_and_comes_back_on_delete(
    alice: Person, project: str, agent: Agent, client: TestClient, db: Database
) -> None:
    second = fleet.join(client, db, "h2", "fd00::2")
    host_prefixes = {a.desired(anyway=True).network.prefix for a in (agent, second)}

    prefixes = [fleet.network(alice, project, f"n{i}")["prefix"] for i in range(3)]

    every = [ipaddress.IPv6Network(p) for p in [*host_prefixes, *prefixes]]
    assert len(every) == 5
    assert not any(a.overlaps(b) for i, a in enumerate(every) for b in every[i + 1 :])
    assert alice.delete(f"{networks(project)}/n0").status_code == 204
    assert fleet.network(alice, project, "again")["prefix"] == prefixes[0]


def test_a_location_out_of_64s_refuses_a_network_with_a_409_and_keeps_nothing(
    alice: Person, project: str, db: Database
) -> None:
    with db.transaction() as session:
        # Too small for an operator to make (a location is a /56 or more); 3 /64s.
        session.add(Location(name="tiny", display_name="tiny", prefix="2001:db8:9::/62"))
    path = networks(project)
    made = [fleet.network(alice, project, f"n{i}", location="tiny")["prefix"] for i in range(3)]

    refused = problem(alice.post(path, json={"name": "n3", "location": "tiny"}), 409, "conflict")

    assert len(set(made)) == 3
    assert refused["detail"] == "the location's prefix 2001:db8:9::/62 has no free /64 left"
    problem(alice.get(f"{path}/n3"), 404)
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(Network)) == 3
        assert session.scalar(select(func.count()).select_from(Subnet)) == 3
    # A network without IPAM needs no /64.
    assert fleet.network(alice, project, "n3", location="tiny", ipam="none")["prefix"] is None


def test_a_network_with_nics_in_it_is_not_deleted_until_they_are_removed(
    alice: Person, project: str, agent: Agent, db: Database
) -> None:
    fleet.network(alice, project, "back")
    fleet.vm(alice, project, "web2", networks=["back"])
    fleet.vm(alice, project, "web1", networks=["back"])
    path = networks(project)

    refused = problem(alice.delete(f"{path}/back"), 409)

    assert refused["detail"] == "network back has NICs of VMs web1, web2: remove them first"
    for name in ("web1", "web2"):
        answer = alice.delete(f"/v1/projects/{project}/vms/{name}/nics/back")
        assert answer.status_code == 202, answer.text
    assert alice.delete(f"{path}/back").status_code == 204
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(Subnet)) == 1  # the host's


def test_another_project_s_network_is_not_found_nor_usable(
    alice: Person, project: str, agent: Agent, people: People, db: Database
) -> None:
    bob = people.user("bob")
    theirs = fleet.project_with_image(people, db, bob, "other")
    secret = fleet.network(bob, theirs, "secret")
    fleet.vm(alice, project, "web1")

    for ref in ("secret", secret["id"]):
        problem(alice.get(f"{networks(project)}/{ref}"), 404)
        body = {"name": "web2", "image": "tiny-web", "networks": [ref]}
        problem(alice.post(f"/v1/projects/{project}/vms", json=body), 404)
        nic = alice.post(f"/v1/projects/{project}/vms/web1/nics", json={"network": ref})
        problem(nic, 404)
    problem(alice.get(networks(theirs)), 404)
    assert [n["name"] for n in bob.get(networks(theirs)).json()["items"]] == ["secret"]


def test_a_deleted_project_takes_its_networks_rules_and_64s_with_it(
    alice: Person, people: People, project: str, agent: Agent, db: Database
) -> None:
    owner = people.user("olive")
    theirs = fleet.project_with_image(people, db, owner, "gone")
    with db.transaction() as session:
        session.execute(
            update(Membership).where(Membership.user_id == owner.key).values(role=Role.OWNER)
        )
    fleet.network(owner, theirs, "back")
    rule = {"network": "back", "protocol": "any"}
    assert owner.post(f"/v1/projects/{theirs}/firewall-rules", json=rule).status_code == 201

    assert owner.delete(f"/v1/projects/{theirs}").status_code == 204

    with db.reading() as session:
        for model in (Network, FirewallRule):
            assert session.scalar(select(func.count()).select_from(model)) == 0
        assert session.scalar(select(func.count()).select_from(Subnet)) == 1  # the host's

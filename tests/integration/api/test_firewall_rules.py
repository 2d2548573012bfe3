"""Firewall rules through the API: checked field by field, listed, removed, and handed
to exactly the hosts whose NICs they open."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from nubis.config import Settings
from nubis.db import Database
from nubis.engine.dispatcher import Dispatcher
from nubis.models import FirewallRule
from nubis.protocol import FirewallRule as WireRule
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


def _rules(project: str) -> str:
    return f"/v1/projects/{project}/firewall-rules"


def test_rules_are_added_listed_by_vm_or_network_and_removed(
    alice: Person, project: str, agent: Agent
) -> None:
    back = fleet.network(alice, project, "back")
    vm = fleet.vm(alice, project, "web1", networks=["back"])
    path = _rules(project)

    ssh = fleet.created(alice.post(path, json={"vm": "web1", "protocol": "tcp", "port": "22"}))
    web = fleet.created(
        alice.post(
            path,
            json={"network": back["id"], "protocol": "udp", "port": "8000-8100",
                  "source": "2001:DB8::/32"},
        )
    )  # fmt: skip
    ping = fleet.created(alice.post(path, json={"network": "back", "protocol": "icmp"}))

    assert ssh["id"].startswith("fwr-")
    assert (ssh["vm"], ssh["network"], ssh["protocol"]) == (vm["id"], None, "tcp")
    assert (ssh["port_min"], ssh["port_max"], ssh["source"]) == (22, 22, "::/0")
    assert (web["vm"], web["network"], web["port_min"], web["port_max"]) == (
        None, back["id"], 8000, 8100,
    )  # fmt: skip
    assert web["source"] == "2001:db8::/32"
    assert (ping["port_min"], ping["port_max"]) == (None, None)
    listed = [r["id"] for r in alice.get(path).json()["items"]]
    assert listed == [ssh["id"], web["id"], ping["id"]]
    by_vm = alice.get(path, params={"vm": "web1"}).json()["items"]
    by_network = alice.get(path, params={"network": "back"}).json()["items"]
    assert [r["id"] for r in by_vm] == [ssh["id"]]
    assert [r["id"] for r in by_network] == [web["id"], ping["id"]]
    problem(alice.get(path, params={"vm": "web9"}), 404)

    assert alice.delete(f"{path}/{ssh['id']}").status_code == 204
    problem(alice.delete(f"{path}/{ssh['id']}"), 404)
    problem(alice.delete(f"{path}/not-an-id"), 404)
    assert [r["id"] for r in alice.get(path).json()["items"]] == [web["id"], ping["id"]]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"vm": "web1", "protocol": "tcp", "source": "10.0.0.0/8"}, {"source"}),
        ({"vm": "web1", "protocol": "tcp", "source": "nowhere"}, {"source"}),
        ({"vm": "web1", "protocol": "tcp", "source": "2001:db8::1/64"}, {"source"}),
        ({"vm": "web1", "protocol": "icmp", "port": "22"}, {"port"}),
        ({"vm": "web1", "protocol": "any", "port": "22"}, {"port"}),
        ({"vm": "web1", "protocol": "tcp", "port": "0"}, {"port"}),
        ({"vm": "web1", "protocol": "tcp", "port": "65536"}, {"port"}),
        ({"vm": "web1", "protocol": "tcp", "port": "8100-8000"}, {"port"}),
        ({"vm": "web1", "protocol": "tcp", "port": "ssh"}, {"port"}),
        ({"vm": "web1", "protocol": "udp", "port": "1-", "source": "::1/0"}, {"port", "source"}),
        ({"vm": "web1", "protocol": "gre"}, {"protocol"}),
        ({"vm": "web1", "network": "back", "protocol": "tcp"}, {"vm", "network"}),
        ({"protocol": "tcp"}, {"vm", "network"}),
    ],
)
def test_a_bad_rule_is_refused_with_a_reason_for_each_field_and_not_made(
    alice: Person,
    project: str,
    agent: Agent,
    db: Database,
    *,
    body: dict[str, str],
    fields: set[str],
) -> None:
    fleet.network(alice, project, "back")
    fleet.vm(alice, project, "web1", networks=["back"])

    refused = problem(alice.post(_rules(project), json=body), 422, "invalid_input")

    assert set(refused["errors"]) == fields, refused
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(FirewallRule)) == 0


def test_rules_reach_the_desired_state_of_exactly_the_hosts_they_concern(
    alice: Person, project: str, agent: Agent, client: TestClient, db: Database
) -> None:
    second = fleet.join(client, db, "h2", "fd00::2")
    third = fleet.join(client, db, "h3", "fd00::3")
    fleet.network(alice, project, "back")
    web1 = fleet.vm(alice, project, "web1", networks=["back"], group="g")
    web2 = fleet.vm(alice, project, "web2", networks=["back"], group="g")
    fleet.vm(alice, project, "web3", group="g")
    by_name = {"h1": agent, "h2": second, "h3": third}
    one, two = fleet.host_name(db, web1["host"]), fleet.host_name(db, web2["host"])
    (bystander,) = set(by_name) - {one, two}
    before = {name: fleet.revision(db, name) for name in by_name}

    ssh = {"vm": "web1", "protocol": "tcp", "port": "22"}
    fleet.created(alice.post(_rules(project), json=ssh))

    after = {name: fleet.revision(db, name) for name in by_name}
    assert after[one] > before[one]
    assert (after[two], after[bystander]) == (before[two], before[bystander])
    spec = next(s for s in by_name[one].desired(anyway=True).vms if s.id == web1["id"])
    assert spec.rules == [WireRule(protocol="tcp", port_min=22, port_max=22, source="::/0")]

    web = {"network": "back", "protocol": "tcp", "port": "443", "source": "2001:db8:aa::/48"}
    rule = fleet.created(alice.post(_rules(project), json=web))

    later = {name: fleet.revision(db, name) for name in by_name}
    assert later[one] > after[one] and later[two] > after[two]
    assert later[bystander] == after[bystander]
    for name in (one, two):
        (wire,) = by_name[name].desired(anyway=True).networks
        assert wire.rules == [
            WireRule(protocol="tcp", port_min=443, port_max=443, source="2001:db8:aa::/48")
        ]
    assert alice.delete(f"{_rules(project)}/{rule['id']}").status_code == 204
    assert fleet.revision(db, two) > later[two]
    assert by_name[two].desired(anyway=True).networks[0].rules == []


def test_a_vm_s_rules_go_with_it_and_a_network_s_with_the_network(
    alice: Person, project: str, agent: Agent, db: Database
) -> None:
    dispatcher = Dispatcher(db, Settings(lease_seconds=30))
    fleet.network(alice, project, "back")
    fleet.network(alice, project, "spare")
    fleet.vm(alice, project, "web1", networks=["back"])
    for body in (
        {"vm": "web1", "protocol": "any"},
        {"network": "spare", "protocol": "icmp"},
    ):
        fleet.created(alice.post(_rules(project), json=body))

    assert alice.delete(f"/v1/projects/{project}/networks/spare").status_code == 204
    assert alice.delete(f"/v1/projects/{project}/vms/web1").status_code == 202
    drain(dispatcher)
    agent.desired(anyway=True)
    agent.report()
    drain(dispatcher)

    assert alice.get(_rules(project)).json()["items"] == []
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(FirewallRule)) == 0


def test_another_project_s_rules_vms_and_networks_are_out_of_reach(
    alice: Person, project: str, agent: Agent, people: People, db: Database
) -> None:
    bob = people.user("bob")
    theirs = fleet.project_with_image(people, db, bob, "other")
    fleet.network(bob, theirs, "secret")
    fleet.vm(bob, theirs, "db1")
    rule = fleet.created(bob.post(_rules(theirs), json={"network": "secret", "protocol": "any"}))

    problem(alice.post(_rules(project), json={"network": "secret", "protocol": "any"}), 404)
    problem(alice.post(_rules(project), json={"vm": "db1", "protocol": "any"}), 404)
    problem(alice.delete(f"{_rules(project)}/{rule['id']}"), 404)
    assert alice.get(_rules(project)).json()["items"] == []

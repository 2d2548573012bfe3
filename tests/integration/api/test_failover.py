"""Host failure, through the API and the engine, with the agents played by the test:
who watches whom, when a silent host is dead (only when its watchers confirm it, and
never right after the control plane's own outage), how a dead host's VMs are
recreated elsewhere with their identity, and an operator's evacuation, which stops a
VM before it starts elsewhere."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from nubis import hosts as registry
from nubis.clock import now
from nubis.config import Settings
from nubis.db import Database
from nubis.engine.dispatcher import Dispatcher
from nubis.ids import Kind, parse_id
from nubis.models import Allocation, Host, Plane
from nubis.scheduling.allocator import differences
from tests.integration.api import fleet
from tests.integration.api.fleet_failure import DEAD, Fleet, vm_events
from tests.integration.api.people import People, Person
from tests.integration.api.test_query_counts import statements

SETTINGS = Settings(lease_seconds=30)
"""The default windows: unreachable 5 s, fence 10 s, dead 20 s."""


@pytest.fixture
def dispatcher(db: Database) -> Dispatcher:
    return Dispatcher(db, SETTINGS)


@pytest.fixture
def hosts(client: TestClient, db: Database, dispatcher: Dispatcher) -> Fleet:
    return Fleet(client, db, dispatcher)


@pytest.fixture
def alice(people: People) -> Person:
    return people.user("alice")


@pytest.fixture
def project(people: People, db: Database, alice: Person) -> str:
    return fleet.project_with_image(people, db, alice)


def _vm(person: Person, project: str, name: str) -> Any:
    answer = person.get(f"/v1/projects/{project}/vms/{name}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def _held(db: Database, vm_id: str) -> list[str]:
    """The hosts (ids) where the VM holds capacity."""
    with db.reading() as session:
        return [
            str(h)
            for h in session.scalars(select(Allocation.host_id).where(Allocation.consumer == vm_id))
        ]


# --- who watches whom ----------------------------------------------------------------


def test_each_host_watches_the_others_of_a_small_location_with_a_fence_time(
    hosts: Fleet,
) -> None:
    hosts.join("h1")
    alone = hosts.desired("h1")
    assert (alone.peers, alone.fence_seconds) == ([], None)

    hosts.join("h2", "h3")
    desired = hosts.desired("h1")
    assert {(p.host, p.address) for p in desired.peers} == {
        (hosts.public("h2"), "fd00::2"),
        (hosts.public("h3"), "fd00::3"),
    }
    assert desired.fence_seconds == SETTINGS.host_fence_seconds


def test_in_a_large_location_each_host_watches_four_and_is_watched_by_the_same_four(
    hosts: Fleet,
) -> None:
    names = [f"h{n}" for n in range(1, 8)]
    hosts.join(*names)
    watched = {name: {p.host for p in hosts.desired(name).peers} for name in names}
    for name in names:
        assert len(watched[name]) == 4
        me = hosts.public(name)
        assert {n for n in names if me in watched[n]} == {
            n for n in names if hosts.public(n) in watched[name]
        }


def test_a_join_and_a_removal_tell_the_hosts_whose_peers_change(hosts: Fleet, db: Database) -> None:
    names = [f"h{n}" for n in range(1, 7)]
    hosts.join(*names)
    before = {name: hosts.host(name).desired_revision for name in names}
    hosts.join("h7")
    grown = {name for name in names if hosts.host(name).desired_revision > before[name]}
    assert grown == {"h1", "h2", "h5", "h6"}  # the ring's neighbours of the newcomer
    assert hosts.public("h7") in {p.host for p in hosts.desired("h6").peers}

    before = {name: hosts.host(name).desired_revision for name in names}
    gone = hosts.public("h7")
    with db.transaction() as session:
        registry.remove(session, registry.find(session, "h7", lock=True))
    grown = {name for name in names if hosts.host(name).desired_revision > before[name]}
    assert grown == {"h1", "h2", "h5", "h6"}
    assert gone not in {p.host for p in hosts.desired("h6").peers}


# --- death is confirmed, not guessed ---------------------------------------------------


def test_a_silent_host_is_dead_only_once_enough_of_its_watchers_report_it_silent(
    hosts: Fleet, alice: Person, project: str
) -> None:
    hosts.join("h1", "h2", "h3", "h4")
    hosts.hearing_for(60)
    hosts.silent("h1", DEAD)
    hosts.look()
    assert hosts.health("h1") == "unreachable"  # nobody said anything of it yet

    hosts.watchers_report("h1", DEAD, by=("h2",))
    hosts.watchers_report("h1", 0.5, by=("h3", "h4"))
    hosts.silent("h1", DEAD)
    hosts.look()
    assert hosts.health("h1") == "unreachable"
    alert = hosts.events("h1", "alert")[-1]
    assert "not dead: 1 of 3 watchers report it silent, 2 see it" in alert

    hosts.watchers_report("h1", DEAD, by=("h2", "h3"))
    hosts.silent("h1", DEAD)
    hosts.look()
    assert hosts.health("h1") == "dead"
    assert "2 of 3 watchers report it silent, 1 sees it" in hosts.events("h1", "health")[-1]


def test_a_host_its_peers_still_see_is_unreachable_and_keeps_its_vms(
    hosts: Fleet, alice: Person, project: str
) -> None:
    hosts.join("h1")
    vm = fleet.vm(alice, project, "web1")
    hosts.join("h2", "h3")
    hosts.run()
    hosts.hearing_for(60)
    hosts.watchers_report("h1", 0.4)
    hosts.silent("h1", 60)
    hosts.look()

    assert hosts.health("h1") == "unreachable"
    assert "watchers report it silent" in hosts.events("h1", "alert")[-1]
    assert _vm(alice, project, "web1")["host"] == hosts.public("h1")
    assert _held(hosts.db, vm["id"]) == [str(hosts.host("h1").id)]
    assert [spec.id for spec in hosts.desired("h1").vms] == [vm["id"]]


def test_a_watcher_s_old_report_does_not_count(hosts: Fleet) -> None:
    hosts.join("h1", "h2")
    hosts.watchers_report("h1", DEAD)
    old = now() - timedelta(seconds=SETTINGS.host_unreachable_seconds + 1)
    with hosts.db.transaction() as session:
        session.execute(update(Host).where(Host.name == "h2").values(peers_reported_at=old))
    hosts.silent("h1", DEAD)
    hosts.hearing_for(60)
    hosts.look()
    assert hosts.health("h1") == "unreachable"


def test_a_host_nobody_watches_is_never_declared_dead(hosts: Fleet) -> None:
    hosts.join("h1")
    hosts.hearing_for(600)
    hosts.silent("h1", 300)
    hosts.look()
    assert hosts.health("h1") == "unreachable"
    assert "no host watches it" in hosts.events("h1", "alert")[-1]


def test_no_host_is_declared_dead_until_the_plane_has_heard_for_a_whole_window(
    hosts: Fleet,
) -> None:
    hosts.join("h1", "h2", "h3")
    hosts.watchers_report("h1", DEAD)
    hosts.silent("h1", DEAD)
    hosts.hearing_for(8)  # the API came back 8 s ago
    hosts.look()
    assert hosts.health("h1") == "unreachable"
    assert "heard from hosts for only 8 s" in hosts.events("h1", "alert")[-1]

    hosts.watchers_report("h1", DEAD + 13)
    hosts.silent("h1", DEAD + 13)
    hosts.hearing_for(21)
    hosts.look()
    assert hosts.health("h1") == "dead"


def test_after_the_api_was_down_for_two_minutes_no_host_is_declared_dead(
    hosts: Fleet, alice: Person, project: str
) -> None:
    hosts.join("h1", "h2", "h3")
    fleet.vm(alice, project, "web1")
    hosts.run()
    # The API was down for two minutes while the workers ran: no host reported, and
    # the last reports the plane has say nothing is wrong.
    for name in ("h1", "h2", "h3"):
        hosts.silent(name, 120)
    with hosts.db.transaction() as session:
        session.execute(
            update(Plane).values(
                receiving_since=now() - timedelta(hours=1),
                last_status_at=now() - timedelta(seconds=120),
            )
        )
    hosts.look()
    assert {hosts.health(n) for n in ("h1", "h2", "h3")} == {"unreachable"}

    # It is back: the first reports come, and the plane starts a new hearing period.
    # h1's agent is slow to come back; its peers have not heard from it for a while.
    hosts.watchers_report("h1", 120)
    hosts.look()
    assert (hosts.health("h1"), hosts.health("h2"), hosts.health("h3")) == (
        "unreachable",
        "online",
        "online",
    )
    assert "heard from hosts for only 0 s" in hosts.events("h1", "alert")[-1]
    assert _vm(alice, project, "web1")["state"] == "running"


def test_after_the_workers_were_down_hosts_that_kept_reporting_are_online(
    hosts: Fleet, alice: Person, project: str
) -> None:
    hosts.join("h1", "h2", "h3")
    fleet.vm(alice, project, "web1")
    hosts.run()
    # The workers were down for two minutes while the API ran: the reports went on.
    hosts.hearing_for(120)
    hosts.run()
    hosts.look()
    assert {hosts.health(n) for n in ("h1", "h2", "h3")} == {"online"}
    assert _vm(alice, project, "web1")["state"] == "running"


# --- evacuation of a dead host ---------------------------------------------------------


def _host_of(hosts: Fleet, vm: Any) -> str:
    names = [name for name in hosts.agents if hosts.public(name) == vm["host"]]
    return names[0] if names else "nowhere"


def test_a_dead_host_s_vms_are_recreated_elsewhere_with_their_names_macs_and_addresses(
    hosts: Fleet, alice: Person, project: str, db: Database
) -> None:
    hosts.join("h1")
    network = fleet.network(alice, project, "back", location="fra1", ipam="auto")
    grouped = fleet.vm(alice, project, "web1", group="web", networks=[network["name"]])
    plain = fleet.vm(alice, project, "db1", user_data="#cloud-config\n")
    hosts.join("h2", "h3", "h4")
    other = fleet.vm(alice, project, "web2", group="web")  # not on h1: h1 holds web1
    hosts.run()
    assert {_host_of(hosts, grouped), _host_of(hosts, plain)} == {"h1"}
    web2_host = _host_of(hosts, _vm(alice, project, "web2"))

    hosts.dies("h1")

    assert hosts.health("h1") == "dead"
    moved = [_vm(alice, project, name) for name in ("web1", "db1")]
    for before, after in zip((grouped, plain), moved, strict=True):
        assert (after["id"], after["name"], after["state"]) == (
            before["id"],
            before["name"],
            "creating",
        )
        assert _host_of(hosts, after) not in ("h1", "nowhere")
        assert [n["mac"] for n in after["nics"]] == [n["mac"] for n in before["nics"]]
        new_prefix = hosts.desired(_host_of(hosts, after)).network.prefix
        assert ipaddress.IPv6Address(after["nics"][0]["address"]) in ipaddress.IPv6Network(
            new_prefix
        )
    assert moved[0]["nics"][1] == grouped["nics"][1]  # the project network's address
    assert _host_of(hosts, moved[0]) != web2_host  # anti-affinity holds
    assert hosts.desired("h1").vms == []
    assert hosts.host("h1").used_cores == 0
    assert differences_of(db) == []
    for vm in (grouped, plain):
        assert len(_held(db, vm["id"])) == 1
        assert vm_events(db, parse_id(Kind.VM, vm["id"]))[-2:] == ["host dead", "placed"]
    assert "2 VM(s) taken off the dead host" in hosts.events("h1", "evacuate")[-1]

    # The new hosts run them, with the same keys and user-data.
    spec = next(s for s in hosts.desired(_host_of(hosts, moved[1])).vms if s.id == plain["id"])
    assert (spec.hostname, spec.user_data) == ("db1", "#cloud-config\n")
    hosts.run(*(n for n in hosts.agents if n != "h1"))
    assert {_vm(alice, project, n)["state"] for n in ("web1", "db1", "web2")} == {"running"}
    assert _vm(alice, project, "web2")["host"] == other["host"]


def differences_of(db: Database) -> list[Any]:
    with db.reading() as session:
        return differences(session)


def test_a_no_ha_vm_stays_stopped_with_its_dead_host_until_started(
    hosts: Fleet, alice: Person, project: str, db: Database
) -> None:
    hosts.join("h1")
    vm = fleet.vm(alice, project, "pet", ha=False)
    assert vm["ha"] is False
    hosts.join("h2", "h3")
    hosts.run()

    hosts.dies("h1")

    shown = _vm(alice, project, "pet")
    assert (shown["state"], shown["host"]) == ("stopped", hosts.public("h1"))
    assert hosts.desired("h1").vms == []
    assert _held(db, vm["id"]) == []
    assert differences_of(db) == []

    started = alice.post(f"/v1/projects/{project}/vms/pet/start")
    assert started.status_code == 202, started.text
    hosts.settle()
    shown = _vm(alice, project, "pet")
    assert _host_of(hosts, shown) in ("h2", "h3")
    assert len(_held(db, vm["id"])) == 1


def test_a_vm_that_fits_nowhere_waits_for_capacity_and_moves_when_a_host_joins(
    hosts: Fleet, alice: Person, project: str, db: Database
) -> None:
    hosts.join("h1")
    big = fleet.vm(alice, project, "big", cores=8)
    hosts.join("h2")
    fleet.vm(alice, project, "filler", cores=8)  # h2 is full
    hosts.run()

    hosts.dies("h1")

    shown = _vm(alice, project, "big")
    assert (shown["state"], shown["host"]) == ("waiting for capacity", None)
    assert "no host with 8 free cores" in shown["detail"]
    assert "waiting" in vm_events(db, parse_id(Kind.VM, big["id"]))
    assert _held(db, big["id"]) == []

    hosts.join("h3")
    shown = _vm(alice, project, "big")
    assert (shown["state"], _host_of(hosts, shown)) == ("creating", "h3")
    assert differences_of(db) == []


def test_a_vm_waiting_for_capacity_can_be_deleted(
    hosts: Fleet, alice: Person, project: str, db: Database
) -> None:
    hosts.join("h1")
    fleet.vm(alice, project, "big", cores=8)
    hosts.join("h2")
    fleet.vm(alice, project, "filler", cores=8)
    hosts.run()
    hosts.dies("h1")

    deleted = alice.delete(f"/v1/projects/{project}/vms/big")
    assert deleted.status_code == 202, deleted.text
    hosts.settle()
    assert alice.get(f"/v1/projects/{project}/vms/big").status_code == 404
    assert differences_of(db) == []


def test_a_dead_host_that_comes_back_runs_nothing_and_takes_new_vms(
    hosts: Fleet, alice: Person, project: str
) -> None:
    hosts.join("h1")
    fleet.vm(alice, project, "web1")
    hosts.join("h2", "h3")
    hosts.run()
    hosts.dies("h1")
    assert _host_of(hosts, _vm(alice, project, "web1")) != "h1"

    hosts.runs["h1"] = {}  # the agent stopped what it ran, as its desired state says
    hosts.run("h1")

    assert hosts.health("h1") == "online"
    assert hosts.desired("h1").vms == []
    assert any("back from the dead" in e for e in hosts.events("h1", "rejoined"))
    fresh = fleet.vm(alice, project, "web3")  # spread: the emptiest host
    assert _host_of(hosts, fresh) == "h1"


def test_a_fenced_agent_is_in_its_host_s_event_log(hosts: Fleet) -> None:
    hosts.join("h1", "h2")
    hosts.agents["h1"].send({}, fenced=True)
    hosts.agents["h1"].send({}, fenced=True)
    assert len(hosts.events("h1", "fenced")) == 1


# --- evacuation by hand ----------------------------------------------------------------


def test_an_evacuated_host_stops_each_vm_before_it_is_placed_elsewhere(
    hosts: Fleet, people: People, alice: Person, project: str, db: Database
) -> None:
    hosts.join("h1")
    vm = fleet.vm(alice, project, "web1")
    hosts.join("h2", "h3")
    hosts.run()
    operator = people.user("olga", operator=True)

    answer = operator.post("/v1/admin/hosts/h1/evacuate")

    assert answer.status_code == 202, answer.text
    assert answer.json() | {"host": "-"} == {
        "host": "-",
        "name": "h1",
        "allocation_state": "draining",
        "moving": 1,
    }
    hosts.settle()
    shown = _vm(alice, project, "web1")
    assert (shown["state"], shown["host"]) == ("moving", hosts.public("h1"))
    assert _held(db, vm["id"]) == [str(hosts.host("h1").id)]
    assert hosts.desired("h1").vms == []  # h1 is told to stop it ...

    hosts.settle()
    assert _vm(alice, project, "web1")["host"] == hosts.public("h1")  # ... and it waits

    hosts.runs["h1"] = {}
    hosts.run("h1")  # h1 reports it converged: the VM no longer runs there
    shown = _vm(alice, project, "web1")
    assert _host_of(hosts, shown) in ("h2", "h3")
    assert shown["state"] == "creating"
    assert differences_of(db) == []
    assert hosts.host("h1").used_cores == 0
    kinds = vm_events(db, parse_id(Kind.VM, vm["id"]))
    assert kinds == ["placed", "evacuate", "leaving", "left", "placed"]
    assert [e.split(":")[0] for e in hosts.events("h1")][-4:] == [
        "allocation_state",
        "evacuate",
        "vm leaving",
        "vm left",
    ]
    events = alice.get(f"/v1/projects/{project}/vms/web1/events").json()["items"]
    assert [e["kind"] for e in events] == kinds


def test_evacuating_a_host_that_dies_meanwhile_moves_its_vms_once(
    hosts: Fleet, people: People, alice: Person, project: str, db: Database
) -> None:
    hosts.join("h1")
    vm = fleet.vm(alice, project, "web1")
    hosts.join("h2", "h3")
    hosts.run()
    operator = people.user("olga", operator=True)
    assert operator.post("/v1/admin/hosts/h1/evacuate").status_code == 202
    hosts.settle()

    hosts.dies("h1")

    assert _host_of(hosts, _vm(alice, project, "web1")) in ("h2", "h3")
    assert len(_held(db, vm["id"])) == 1
    assert differences_of(db) == []


def test_only_operators_evacuate_hosts(hosts: Fleet, alice: Person) -> None:
    hosts.join("h1")
    assert alice.post("/v1/admin/hosts/h1/evacuate").status_code == 403


def test_a_status_takes_as_many_statements_with_four_peers_as_with_one(
    hosts: Fleet, db: Database
) -> None:
    hosts.join("h1", "h2", "h3", "h4", "h5")
    agent = hosts.agents["h1"]
    seen = [hosts.public(name) for name in ("h2", "h3", "h4", "h5")]
    agent.send({}, peers={seen[0]: 1.0})  # the pool's first connection warms up
    with statements(db.engine) as for_one:
        agent.send({}, peers={seen[0]: 1.0})
    with statements(db.engine) as for_four:
        agent.send({}, peers=dict.fromkeys(seen, 1.0))
    assert len(for_four) == len(for_one), "\n".join(for_four)

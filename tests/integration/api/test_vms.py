"""The VM lifecycle through the API, with the engine stepped by hand and a host agent
played by the test over the agent API: what the host is told to run, and what people
see as the agent reports back."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import func, select

from nubis.config import Settings
from nubis.db import Database
from nubis.engine.dispatcher import Dispatcher
from nubis.models import Allocation, Host, Image, ImageState, Nic, Role, Vm
from nubis.scheduling.allocator import differences
from tests.integration.api.host_agent import Agent
from tests.integration.api.people import People, Person, problem
from tests.integration.engine.helpers import drain

KEY = (
    Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
).decode()
GIB = 1024**3


@pytest.fixture
def dispatcher(db: Database) -> Dispatcher:
    return Dispatcher(db, Settings(lease_seconds=30))


@pytest.fixture
def alice(people: People) -> Person:
    return people.user("alice")


@pytest.fixture
def project(people: People, alice: Person, db: Database) -> str:
    made = people.project("web", {alice: Role.MEMBER})
    added = alice.post(f"/v1/projects/{made}/ssh-keys", json={"name": "laptop", "public_key": KEY})
    assert added.status_code == 201, added.text
    with db.transaction() as session:
        session.add(
            Image(
                name="tiny",
                state=ImageState.ACTIVE,
                size_bytes=20 * 2**20,
                virtual_size_bytes=GIB,
                sha256="ab" * 32,
            )
        )
    return made


def create(person: Person, project: str, name: str = "web1", **extra: Any) -> Any:
    body = {"name": name, "image": "tiny", "cores": 2, "memory": "4G", **extra}
    return person.post(f"/v1/projects/{project}/vms", json=body)


def state(person: Person, project: str, name: str = "web1") -> str:
    answer = person.get(f"/v1/projects/{project}/vms/{name}")
    assert answer.status_code == 200, answer.text
    found: str = answer.json()["state"]
    return found


def test_a_new_vm_is_placed_and_its_host_told_to_run_it_with_the_project_s_keys(
    alice: Person, project: str, agent: Agent, db: Database
) -> None:
    answer = create(alice, project)

    assert answer.status_code == 202, answer.text
    vm = answer.json()
    assert vm["state"] == "creating"
    assert vm["disk_bytes"] == GIB  # the image's virtual size
    desired = agent.desired()
    (spec,) = desired.vms
    assert (spec.id, spec.hostname, spec.cores, spec.memory_bytes) == (vm["id"], "web1", 2, 4 * GIB)
    assert spec.running and spec.ssh_keys == [KEY]
    (nic,) = spec.nics
    assert ipaddress.IPv6Address(nic.address) in ipaddress.IPv6Network(desired.network.prefix)
    assert ipaddress.IPv6Network(desired.network.prefix).subnet_of(
        ipaddress.IPv6Network("2001:db8:1::/48")
    )
    assert vm["nics"] == [
        {"number": 0, "mac": nic.mac, "address": nic.address, "network": None, "network_name": None}
    ]
    assert (nic.number, nic.network, nic.mtu) == (0, None, None)
    assert desired.networks == []
    with db.reading() as session:
        host = session.scalars(select(Host)).one()
        assert (host.used_cores, host.used_memory_bytes) == (2, 4 * GIB)


def test_a_vm_runs_stops_starts_and_reboots_as_its_host_reports(
    alice: Person, project: str, agent: Agent, dispatcher: Dispatcher
) -> None:
    vm = create(alice, project).json()["id"]
    agent.desired()
    drain(dispatcher)
    assert state(alice, project) == "creating"

    agent.report(**{vm: "running"})
    drain(dispatcher)
    assert state(alice, project) == "running"

    stopping = alice.post(f"/v1/projects/{project}/vms/web1/stop")
    assert (stopping.status_code, stopping.json()["state"]) == (202, "stopping")
    drain(dispatcher)
    assert agent.desired().vms[0].running is False
    assert state(alice, project) == "stopping"
    agent.report(**{vm: "stopped"})
    drain(dispatcher)
    assert state(alice, project) == "stopped"
    refused = alice.post(f"/v1/projects/{project}/vms/web1/reboot")
    assert refused.status_code == 409
    assert refused.json()["detail"] == "VM web1 is stopped: start it instead of rebooting it"

    assert alice.post(f"/v1/projects/{project}/vms/web1/start").json()["state"] == "starting"
    drain(dispatcher)
    assert agent.desired().vms[0].running is True
    agent.report(**{vm: "running"})
    assert alice.post(f"/v1/projects/{project}/vms/web1/reboot").json()["state"] == "rebooting"
    drain(dispatcher)
    assert agent.desired().vms[0].reboots == 1
    assert state(alice, project) == "rebooting"


def test_a_deleted_vm_shows_deleting_at_once_and_is_gone_with_all_it_held_once_its_host_let_go(
    alice: Person, project: str, agent: Agent, dispatcher: Dispatcher, db: Database
) -> None:
    vm = create(alice, project).json()["id"]
    agent.desired()
    agent.report(**{vm: "running"})
    drain(dispatcher)

    answer = alice.delete(f"/v1/projects/{project}/vms/web1")

    assert answer.status_code == 202
    assert answer.json()["state"] == "deleting"
    drain(dispatcher)
    assert state(alice, project) == "deleting"
    assert agent.desired().vms == []
    drain(dispatcher)
    assert state(alice, project) == "deleting"  # the host has not said it let go
    agent.report()
    drain(dispatcher)
    problem(alice.get(f"/v1/projects/{project}/vms/web1"), 404)
    with db.reading() as session:
        host = session.scalars(select(Host)).one()
        assert (host.used_cores, host.used_memory_bytes, host.used_disk_bytes) == (0, 0, 0)
        for model in (Vm, Nic, Allocation):
            assert session.scalar(select(func.count()).select_from(model)) == 0
        assert differences(session) == []


def test_a_vm_that_fits_nowhere_is_refused_and_not_made(
    alice: Person, project: str, agent: Agent, db: Database
) -> None:
    too_many = problem(create(alice, project, cores=65), 422)
    refused = problem(create(alice, project, cores=32), 409, "no_capacity")

    assert "cores" in too_many["errors"]
    assert "1 host had too few free cores" in refused["detail"]
    assert alice.get(f"/v1/projects/{project}/vms").json()["items"] == []
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(Vm)) == 0


def test_a_disk_smaller_than_the_image_or_an_unknown_size_is_refused(
    alice: Person, project: str, agent: Agent
) -> None:
    small = problem(create(alice, project, disk="512M"), 422)
    unitless = problem(create(alice, project, memory="512"), 422)

    assert "smaller than the image" in small["detail"]
    assert "is not a size" in unitless["detail"]


@pytest.mark.parametrize(
    ("field", "size", "reason"),
    [
        ("memory", "127M", "at least 128MiB"),
        ("memory", "4097G", "at most 4TiB"),
        ("disk", "65T", "at most 64TiB"),
        (
            "memory",
            "999999999999999T",
            "'999999999999999T' is too large: a size is at most 9223372036854775807 bytes",
        ),
        (
            "disk",
            "8388608T",
            "'8388608T' is too large: a size is at most 9223372036854775807 bytes",
        ),
    ],
)
def test_a_size_beyond_what_a_vm_or_the_store_takes_is_refused_naming_the_field(
    alice: Person, project: str, agent: Agent, db: Database, *, field: str, size: str, reason: str
) -> None:
    refused = problem(create(alice, project, **{field: size}), 422, "invalid_input")

    assert refused["errors"] == {field: reason}
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(Vm)) == 0


def test_the_smallest_memory_a_vm_boots_with_is_taken(
    alice: Person, project: str, agent: Agent
) -> None:
    answer = create(alice, project, memory="128M")

    assert answer.status_code == 202, answer.text
    assert answer.json()["memory_bytes"] == 128 * 2**20


def test_vm_names_are_unique_in_a_project(alice: Person, project: str, agent: Agent) -> None:
    assert create(alice, project).status_code == 202

    problem(create(alice, project), 409)

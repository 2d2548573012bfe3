"""`GET …/vms/{vm}/console`: the tail of a VM's serial console, as its host's agent last
reported it, for everyone in the project to read."""

from __future__ import annotations

from typing import Any

import pytest

from nubis.db import Database
from nubis.models import Image, ImageState, Role
from tests.integration.api.host_agent import Agent
from tests.integration.api.people import People, Person, problem

GIB = 1024**3


@pytest.fixture
def alice(people: People) -> Person:
    return people.user("alice")


@pytest.fixture
def victor(people: People) -> Person:
    return people.user("victor")


@pytest.fixture
def project(people: People, alice: Person, victor: Person, db: Database) -> str:
    made = people.project("web", {alice: Role.MEMBER, victor: Role.VIEWER})
    with db.transaction() as session:
        session.add(
            Image(
                name="tiny",
                state=ImageState.ACTIVE,
                size_bytes=2**20,
                virtual_size_bytes=GIB,
                sha256="ab" * 32,
            )
        )
    return made


@pytest.fixture
def vm(alice: Person, project: str, agent: Agent) -> str:
    body = {"name": "web1", "image": "tiny", "memory": "512M", "ssh_keys": []}
    answer = alice.post(f"/v1/projects/{project}/vms", json=body)
    assert answer.status_code == 202, answer.text
    agent.desired()
    vm_id: str = answer.json()["id"]
    return vm_id


def report(agent: Agent, vm: str, **observed: Any) -> None:
    """A status report from the host's agent, as it posts them."""
    body = {
        "revision": agent.revision,
        "vms": [{"id": vm, "state": "running", "reboots": 0, **observed}],
    }
    answer = agent.client.post("/v1/agent/status", json=body, headers=agent.auth)
    assert answer.status_code == 204, answer.text


def console(person: Person, project: str, vm: str = "web1") -> str:
    answer = person.get(f"/v1/projects/{project}/vms/{vm}/console")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain"), answer.headers
    return answer.text


def test_the_console_is_empty_until_the_host_reports_some(
    victor: Person, project: str, vm: str, agent: Agent
) -> None:
    assert console(victor, project) == ""
    report(agent, vm)
    assert console(victor, project) == ""


def test_a_viewer_reads_the_console_the_host_last_reported(
    victor: Person, project: str, vm: str, agent: Agent
) -> None:
    report(agent, vm, console="SeaBIOS\nLinux version 6.1\n")
    assert console(victor, project) == "SeaBIOS\nLinux version 6.1\n"

    report(agent, vm, console="Linux version 6.1\nweb1 login: ")
    assert console(victor, project, vm) == "Linux version 6.1\nweb1 login: "


def test_a_report_without_console_text_leaves_the_console_as_it_was(
    victor: Person, project: str, vm: str, agent: Agent
) -> None:
    report(agent, vm, console="web1 login: ")
    report(agent, vm, state="stopped")
    report(agent, vm, console=None)

    assert console(victor, project) == "web1 login: "


def test_a_long_console_with_any_characters_comes_back_as_sent(
    victor: Person, project: str, vm: str, agent: Agent
) -> None:
    tail = "".join(f"line {n}: ünïcödé ✓\n" for n in range(700))[-16 * 1024 :]
    report(agent, vm, console=tail)

    assert console(victor, project) == tail


def test_the_console_of_an_unknown_vm_or_another_project_is_not_found(
    people: People, alice: Person, project: str, vm: str
) -> None:
    outsider = people.user("olga")
    problem(alice.get(f"/v1/projects/{project}/vms/web2/console"), 404)
    problem(outsider.get(f"/v1/projects/{project}/vms/web1/console"), 404)

"""A project's VMs in the console, with the engine stepped by hand and the host played
by the test: a member creates a VM with the form and sees its state follow what the
host reports; a viewer sees it and can change nothing; a user of another project sees
none of it, exactly as the API answers them."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from nubis.config import Settings
from nubis.db import Database
from nubis.engine.dispatcher import Dispatcher
from nubis.models import Image, ImageState, Role
from nubis.web.routes.vms import ACTIONS
from tests.integration.api.host_agent import Agent
from tests.integration.api.people import People, Person
from tests.integration.engine.helpers import drain
from tests.integration.web.visitor import Visitor

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILzBjTientSi8txdCYx9B4IlJASwI75+3nsZG3wAFPvp a@laptop"
HTMX = {"HX-Request": "true"}


@pytest.fixture
def dispatcher(db: Database) -> Dispatcher:
    return Dispatcher(db, Settings(lease_seconds=30))


@pytest.fixture
def alice(people: People) -> Person:
    return people.user("alice")


@pytest.fixture
def bob(people: People) -> Person:
    return people.user("bob")


@pytest.fixture
def project(people: People, alice: Person, bob: Person, db: Database, agent: Agent) -> str:
    """Project `web`: alice a member, bob a viewer; one host, an image and a key."""
    made = people.project("web", {alice: Role.MEMBER, bob: Role.VIEWER})
    added = alice.post(f"/v1/projects/{made}/ssh-keys", json={"name": "laptop", "public_key": KEY})
    assert added.status_code == 201, added.text
    with db.transaction() as session:
        session.add(
            Image(
                name="tiny",
                state=ImageState.ACTIVE,
                size_bytes=20 * 2**20,
                virtual_size_bytes=2**30,
                sha256="ab" * 32,
            )
        )
    return made


def _signed_in(app: FastAPI, person: Person) -> Visitor:
    visitor = Visitor(app)
    assert visitor.sign_in(person.email).status_code == 303
    return visitor


def _state_in(html: str, vm: str) -> str:
    row = re.search(rf'<tr id="row-[^"]+" data-vm="{vm}">.*?</tr>', html, re.S)
    assert row is not None, html
    found = re.search(r"data-state>([^<]+)<", row[0])
    assert found is not None
    return found[1]


def test_a_member_creates_a_vm_and_its_list_follows_it_to_running_then_deleting_then_gone(
    app: FastAPI, alice: Person, project: str, agent: Agent, dispatcher: Dispatcher
) -> None:
    visitor = _signed_in(app, alice)
    form = visitor.get("/projects/web/vms/new")
    assert '<option value="tiny">tiny (public)</option>' in form.text

    made = visitor.post(
        "/projects/web/vms",
        {"name": "web1", "image": "tiny", "cores": "2", "memory": "2G", "ha": "on"},
    )

    assert made.status_code == 303
    assert made.headers["location"] == "/projects/web/vms/web1"
    page = visitor.get("/projects/web/vms/web1")
    assert "data-state>creating<" in page.text
    assert "2 cores, 2GiB memory, 1GiB disk" in page.text
    vm = agent.desired().vms[0]
    assert vm.ssh_keys == [KEY]  # no key ticked: the project's keys, as the API does
    agent.report(**{vm.id: "running"})
    drain(dispatcher)
    rows = visitor.get("/projects/web/vms", headers=HTMX)
    assert rows.text.lstrip().startswith('<div id="vm-list"')  # a fragment, not a page
    assert _state_in(rows.text, "web1") == "running"

    deleting = visitor.post(
        "/projects/web/vms/web1/delete",
        headers={**HTMX, "HX-Target": re.search(r'id="(row-[^"]+)"', rows.text)[1]},  # type: ignore[index]
    )

    assert deleting.status_code == 200
    assert _state_in(deleting.text, "web1") == "deleting"
    drain(dispatcher)
    agent.desired()
    agent.report()
    drain(dispatcher)
    assert 'data-vm="web1"' not in visitor.get("/projects/web/vms", headers=HTMX).text
    gone = visitor.get("/projects/web/vms/web1/panel", headers=HTMX)
    assert gone.status_code == 286  # htmx stops polling
    assert "This VM is gone" in gone.text


def test_a_refused_vm_is_not_made_and_the_form_says_why_as_the_api_does(
    app: FastAPI, alice: Person, project: str
) -> None:
    visitor = _signed_in(app, alice)
    visitor.get("/projects/web/vms/new")

    unknown = visitor.post("/projects/web/vms", {"name": "web1", "image": "nope"})
    too_big = visitor.post("/projects/web/vms", {"name": "web1", "image": "tiny", "cores": "65"})
    bad_name = visitor.post("/projects/web/vms", {"name": "Web 1", "image": "tiny"})

    assert unknown.status_code == 404
    assert "no image &#39;nope&#39;" in unknown.text
    assert too_big.status_code == 422
    assert "<strong>cores</strong>: Input should be less than or equal to 64" in too_big.text
    assert bad_name.status_code == 422
    assert 'value="Web 1"' in bad_name.text  # what was typed is kept
    assert alice.get("/v1/projects/web/vms").json()["items"] == []


def test_a_viewer_sees_the_vm_but_no_button_that_would_change_anything(
    app: FastAPI, alice: Person, bob: Person, project: str
) -> None:
    assert (
        alice.post("/v1/projects/web/vms", json={"name": "web1", "image": "tiny"}).status_code
        == 202
    )
    visitor = _signed_in(app, bob)

    listed = visitor.get("/projects/web/vms")
    shown = visitor.get("/projects/web/vms/web1")
    keys = visitor.get("/projects/web/keys")

    assert _state_in(listed.text, "web1") == "creating"
    assert "New VM" not in listed.text
    assert "hx-post" not in listed.text + shown.text
    assert "<h1>VM web1</h1>" in shown.text
    assert 'data-key="laptop"' in keys.text
    assert "Add a key" not in keys.text
    assert "Remove" not in keys.text


def _change_routes(app: FastAPI) -> list[str]:
    """Every route of the console that changes something in a project, its path filled
    in for VM web1 and key laptop of project web."""
    paths = []
    for route in iter_route_contexts(app.routes):
        if route.path is None or route.path.startswith("/v1/"):
            continue
        if "POST" not in (route.methods or set()) or "{project}" not in route.path:
            continue
        filled = route.path.replace("{project}", "web").replace("{vm}", "web1")
        filled = filled.replace("{key}", "laptop")
        if "{action}" in filled:
            paths += [filled.replace("{action}", action) for action in ACTIONS]
        else:
            paths.append(filled)
    return sorted(paths)


def test_every_change_route_of_a_project_refuses_a_viewer_and_hides_it_from_an_outsider(
    app: FastAPI, people: People, alice: Person, bob: Person, project: str
) -> None:
    assert (
        alice.post("/v1/projects/web/vms", json={"name": "web1", "image": "tiny"}).status_code
        == 202
    )
    carol = people.user("carol")
    people.project("other", {carol: Role.OWNER})
    viewer, outsider = _signed_in(app, bob), _signed_in(app, carol)
    routes = _change_routes(app)
    assert routes == [
        "/projects/web/keys",
        "/projects/web/keys/laptop/delete",
        "/projects/web/vms",
        "/projects/web/vms/web1/delete",
        "/projects/web/vms/web1/reboot",
        "/projects/web/vms/web1/start",
        "/projects/web/vms/web1/stop",
    ]
    form = {"name": "web2", "image": "tiny", "public_key": KEY}

    by_viewer = {path: viewer.post(path, form).status_code for path in routes}
    by_outsider = {path: outsider.post(path, form).status_code for path in routes}

    assert by_viewer == dict.fromkeys(routes, 403)
    assert by_outsider == dict.fromkeys(routes, 404)
    for path in ("/projects/web/vms", "/projects/web/vms/web1", "/projects/web/keys"):
        assert outsider.get(path).status_code == 404
    assert [vm["name"] for vm in alice.get("/v1/projects/web/vms").json()["items"]] == ["web1"]
    assert alice.get("/v1/projects/web/vms/web1").json()["state"] == "creating"
    assert len(alice.get("/v1/projects/web/ssh-keys").json()["items"]) == 1


def test_the_vm_page_offers_what_its_state_allows_and_answers_with_the_api_s_state(
    app: FastAPI, alice: Person, project: str, agent: Agent, dispatcher: Dispatcher
) -> None:
    vm = alice.post("/v1/projects/web/vms", json={"name": "web1", "image": "tiny"}).json()["id"]
    agent.desired()
    agent.report(**{vm: "running"})
    drain(dispatcher)
    visitor = _signed_in(app, alice)

    def buttons(html: str) -> list[str]:
        return re.findall(r'hx-post="/projects/web/vms/web1/(\w+)"', html)

    assert buttons(visitor.get("/projects/web/vms/web1").text) == ["stop", "reboot", "delete"]
    stopping = visitor.post("/projects/web/vms/web1/stop", headers=HTMX)
    assert "data-state>stopping<" in stopping.text
    assert buttons(stopping.text) == ["stop", "delete"]
    drain(dispatcher)
    agent.desired()
    agent.report(**{vm: "stopped"})
    drain(dispatcher)
    panel = visitor.get("/projects/web/vms/web1/panel", headers=HTMX)
    assert buttons(panel.text) == ["start", "delete"]
    refused = visitor.post("/projects/web/vms/web1/reboot", headers=HTMX)
    assert refused.status_code == 409
    assert refused.text.strip() == (
        '<p class="error" role="alert">Conflict: VM web1 is stopped: start it instead of '
        "rebooting it</p>"
    )
    assert "data-state>starting<" in visitor.post("/projects/web/vms/web1/start", headers=HTMX).text

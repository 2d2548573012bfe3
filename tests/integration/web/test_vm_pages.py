"""A project's VMs in the console, with the engine stepped by hand and the host played
by the test: a member creates a VM with the form and sees its state follow what the
host reports; a viewer sees it and can change nothing; a user of another project sees
none of it, exactly as the API answers them."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from nubis.engine.dispatcher import Dispatcher
from nubis.models import Role
from nubis.web.routes.vms import ACTIONS
from tests.integration.api.host_agent import Agent
from tests.integration.api.people import People, Person
from tests.integration.engine.helpers import drain
from tests.integration.web.conftest import KEY, signed_in
from tests.integration.web.visitor import Visitor

HTMX = {"HX-Request": "true"}


def _state_in(html: str, vm: str) -> str:
    row = re.search(rf'<tr id="row-[^"]+" data-vm="{vm}">.*?</tr>', html, re.S)
    assert row is not None, html
    found = re.search(r"data-state>([^<]+)<", row[0])
    assert found is not None
    return found[1]


def test_a_member_creates_a_vm_and_its_list_follows_it_to_running_then_deleting_then_gone(
    app: FastAPI, alice: Person, project: str, agent: Agent, dispatcher: Dispatcher
) -> None:
    visitor = signed_in(app, alice)
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
    visitor = signed_in(app, alice)
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
    visitor = signed_in(app, bob)

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


def _change_routes(app: FastAPI, fill: dict[str, str]) -> list[tuple[str, str]]:
    """Every route of the console that changes something in a project, as (method,
    path), its path filled in from `fill` (the path parameter's name to its value)."""
    routes = []
    for route in iter_route_contexts(app.routes):
        if route.path is None or route.path.startswith("/v1/"):
            continue
        if "{project}" not in route.path:
            continue
        for method in sorted({"POST", "PUT"} & (route.methods or set())):
            filled = route.path
            for name, value in fill.items():
                filled = filled.replace("{" + name + "}", value)
            if "{action}" in filled:
                routes += [(method, filled.replace("{action}", a)) for a in ACTIONS]
            else:
                routes.append((method, filled))
    return sorted(routes)


def test_every_change_route_of_a_project_refuses_a_viewer_and_hides_it_from_an_outsider(
    app: FastAPI, people: People, alice: Person, bob: Person, project: str
) -> None:
    assert (
        alice.post("/v1/projects/web/vms", json={"name": "web1", "image": "tiny"}).status_code
        == 202
    )
    assert alice.post("/v1/projects/web/networks", json={"name": "blue"}).status_code == 201
    rule = alice.post(
        "/v1/projects/web/firewall-rules", json={"network": "blue", "protocol": "tcp"}
    ).json()["id"]
    olga = people.user("olga")
    people.project("other", {olga: Role.OWNER})
    owner = people.user("oscar")
    people.join("web", owner, Role.OWNER)
    image = alice.post("/v1/projects/web/images", json={"name": "mine"}).json()["id"]
    invited = owner.post(
        "/v1/projects/web/invitations", json={"email": "eve@example.org", "role": "member"}
    ).json()["id"]
    viewer, outsider = signed_in(app, bob), signed_in(app, olga)
    fill = {"vm": "web1", "key": "laptop", "network": "blue", "rule": rule, "image": image}
    fill |= {"project": "web", "user": "alice", "invitation": invited}
    routes = _change_routes(app, fill)
    assert sorted(path for _, path in routes) == sorted(
        [
            f"/projects/web/firewall-rules/{rule}/delete",
            "/projects/web/images",
            f"/projects/web/images/{image}/delete",
            f"/projects/web/images/{image}/file",
            "/projects/web/keys",
            "/projects/web/keys/laptop/delete",
            "/projects/web/members/alice/delete",
            "/projects/web/members/alice/role",
            "/projects/web/members/invitations",
            f"/projects/web/members/invitations/{invited}/delete",
            "/projects/web/networks",
            "/projects/web/networks/blue/delete",
            "/projects/web/networks/blue/rules",
            "/projects/web/vms",
            "/projects/web/vms/web1/delete",
            "/projects/web/vms/web1/nics",
            "/projects/web/vms/web1/nics/blue/delete",
            "/projects/web/vms/web1/reboot",
            "/projects/web/vms/web1/rules",
            "/projects/web/vms/web1/start",
            "/projects/web/vms/web1/stop",
        ]
    )
    form = {"name": "web2", "image": "tiny", "public_key": KEY, "network": "blue"}
    form |= {"protocol": "udp", "role": "owner", "email": "mallory@example.org"}

    def by(visitor: Visitor) -> dict[str, int]:
        return {
            path: visitor.post(path, form).status_code
            if method == "POST"
            else visitor.client.put(
                path, content=b"x", headers={"X-CSRF-Token": visitor.csrf}
            ).status_code
            for method, path in routes
        }

    assert by(viewer) == dict.fromkeys([path for _, path in routes], 403)
    assert by(outsider) == dict.fromkeys([path for _, path in routes], 404)
    for path in (
        "/projects/web/vms",
        "/projects/web/vms/web1",
        "/projects/web/keys",
        "/projects/web/networks",
        "/projects/web/networks/blue",
    ):
        assert outsider.get(path).status_code == 404
    assert [vm["name"] for vm in alice.get("/v1/projects/web/vms").json()["items"]] == ["web1"]
    assert alice.get("/v1/projects/web/vms/web1").json()["state"] == "creating"
    assert len(alice.get("/v1/projects/web/vms/web1").json()["nics"]) == 1
    assert len(alice.get("/v1/projects/web/ssh-keys").json()["items"]) == 1
    assert [n["name"] for n in alice.get("/v1/projects/web/networks").json()["items"]] == ["blue"]
    assert len(alice.get("/v1/projects/web/firewall-rules").json()["items"]) == 1


def test_the_vm_page_offers_what_its_state_allows_and_answers_with_the_api_s_state(
    app: FastAPI, alice: Person, project: str, agent: Agent, dispatcher: Dispatcher
) -> None:
    vm = alice.post("/v1/projects/web/vms", json={"name": "web1", "image": "tiny"}).json()["id"]
    agent.desired()
    agent.report(**{vm: "running"})
    drain(dispatcher)
    visitor = signed_in(app, alice)

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

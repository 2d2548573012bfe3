"""A project's networks, a VM's NICs in them and firewall rules, in the console: made,
refused with the API's reasons (the form kept), and removed."""

from __future__ import annotations

import re

from fastapi import FastAPI

from tests.integration.api.people import Person
from tests.integration.web.conftest import signed_in


def test_a_member_makes_a_network_gives_a_vm_a_nic_and_opens_a_port_then_undoes_it_all(
    app: FastAPI, alice: Person, project: str
) -> None:
    assert (
        alice.post("/v1/projects/web/vms", json={"name": "web1", "image": "tiny"}).status_code
        == 202
    )
    visitor = signed_in(app, alice)
    visitor.get("/projects/web/networks")

    bad = visitor.post("/projects/web/networks", {"name": "Blue!", "ipam": "auto"})
    made = visitor.post("/projects/web/networks", {"name": "blue", "ipam": "auto"})
    again = visitor.post("/projects/web/networks", {"name": "blue", "ipam": "auto"})

    assert bad.status_code == 422
    assert 'value="Blue!"' in bad.text
    assert made.headers["location"] == "/projects/web/networks/blue"
    assert again.status_code == 409
    shown = visitor.get("/projects/web/networks/blue")
    prefix = alice.get("/v1/projects/web/networks/blue").json()["prefix"]
    assert f"<code>{prefix}</code>" in shown.text

    page = visitor.get("/projects/web/vms/web1")
    assert '<option value="blue">blue</option>' in page.text
    added = visitor.post("/projects/web/vms/web1/nics", {"network": "blue"})
    assert added.headers["location"] == "/projects/web/vms/web1"
    nics = alice.get("/v1/projects/web/vms/web1").json()["nics"]
    assert [(n["number"], n["network_name"]) for n in nics] == [(0, None), (1, "blue")]
    refused = visitor.post("/projects/web/networks/blue/delete")
    assert refused.status_code == 409
    assert "web1" in refused.text

    wrong_port = visitor.post("/projects/web/vms/web1/rules", {"protocol": "tcp", "port": "99999"})
    assert wrong_port.status_code == 422
    assert 'value="99999"' in wrong_port.text
    opened = visitor.post(
        "/projects/web/vms/web1/rules", {"protocol": "tcp", "port": "22", "source": "2001:db8::/32"}
    )
    assert opened.headers["location"] == "/projects/web/vms/web1"
    (rule,) = alice.get("/v1/projects/web/firewall-rules").json()["items"]
    assert (rule["protocol"], rule["port_min"], rule["source"]) == ("tcp", 22, "2001:db8::/32")
    page = visitor.get("/projects/web/vms/web1")
    row = re.search(rf'<tr data-rule="{rule["id"]}">.*?</tr>', page.text, re.S)
    assert row is not None
    assert "<td>tcp</td><td>22</td><td><code>2001:db8::/32</code></td>" in row[0]

    removed = visitor.post(
        f"/projects/web/firewall-rules/{rule['id']}/delete", {"back": "/projects/web/vms/web1"}
    )
    assert removed.headers["location"] == "/projects/web/vms/web1"
    assert alice.get("/v1/projects/web/firewall-rules").json()["items"] == []
    visitor.get("/projects/web/vms/web1")
    assert visitor.post("/projects/web/vms/web1/nics/blue/delete").status_code == 303
    gone = visitor.post("/projects/web/networks/blue/delete")
    assert gone.headers["location"] == "/projects/web/networks"
    assert alice.get("/v1/projects/web/networks").json()["items"] == []


def test_removing_a_rule_goes_back_only_to_a_page_of_this_site(
    app: FastAPI, alice: Person, project: str
) -> None:
    alice.post("/v1/projects/web/networks", json={"name": "blue"})
    rule = alice.post(
        "/v1/projects/web/firewall-rules", json={"network": "blue", "protocol": "icmp"}
    ).json()["id"]
    visitor = signed_in(app, alice)

    answer = visitor.post(f"/projects/web/firewall-rules/{rule}/delete", {"back": "//evil.example"})

    assert answer.headers["location"] == "/projects/web/vms"

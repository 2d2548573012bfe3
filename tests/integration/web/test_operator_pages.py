"""The operator's pages: hosts with their capacity, drained and undrained through the
API's operator routes (audited the same), failed strands retried, the audit log; and
none of it for a user who is not an operator."""

from __future__ import annotations

import re

from fastapi import FastAPI
from sqlalchemy import select, update

from nubis.choices import StrandStatus
from nubis.db import Database
from nubis.engine import Prog, label, start
from nubis.ids import Kind, format_id
from nubis.models import AuditEvent
from nubis.models.engine import Strand
from tests.integration.api.host_agent import Agent
from tests.integration.api.people import People, Person
from tests.integration.web.conftest import signed_in


class Stuck(Prog):
    """Never run here: the test fails its strand by hand."""

    @label
    def start(self) -> None:
        self.nap(3600)


def test_an_operator_sees_a_host_s_capacity_and_drains_and_undrains_it_audited(
    app: FastAPI, people: People, agent: Agent, db: Database
) -> None:
    operator = signed_in(app, people.user("ops", operator=True))

    page = operator.get("/admin/hosts")
    assert page.status_code == 200
    row = re.search(r'<tr data-host="([^"]+)">.*?</tr>', page.text, re.S)
    assert row is not None
    host = row[1]
    assert re.search(
        r'aria-label="cores of [^"]+" aria-valuemin="0" aria-valuemax="\d+" aria-valuenow="0"',
        row[0],
    )
    assert "data-health>online<" in row[0]
    assert "Drain" in row[0] and "Undrain" not in row[0]

    drained = operator.post(f"/admin/hosts/{host}/drain", headers={"HX-Request": "true"})
    assert drained.status_code == 200
    assert "data-allocation>draining<" in drained.text
    assert "Undrain" in drained.text
    assert operator.post(f"/admin/hosts/{host}/undrain").headers["location"] == "/admin/hosts"
    with db.reading() as session:
        events = session.execute(
            select(AuditEvent.action, AuditEvent.outcome, AuditEvent.email)
            .where(AuditEvent.action.like("admin.host.%"))
            .order_by(AuditEvent.at)
        ).all()
    assert [tuple(e) for e in events] == [
        ("admin.host.drain", "success", "ops@example.test"),
        ("admin.host.undrain", "success", "ops@example.test"),
    ]
    audit = operator.get("/admin/audit")
    assert audit.text.count('data-audit="admin.host.') == 2


def test_an_operator_retries_a_failed_strand_from_its_page(
    app: FastAPI, people: People, db: Database
) -> None:
    with db.transaction() as session:
        strand_id = start(session, Stuck)
    with db.transaction() as session:
        session.execute(
            update(Strand)
            .where(Strand.id == strand_id)
            .values(
                status=StrandStatus.FAILED, tries=10, last_error="RuntimeError: the disk is full"
            )
        )
    operator = signed_in(app, people.user("ops", operator=True))
    shown = format_id(Kind.STRAND, strand_id)

    page = operator.get("/admin/strands")
    retried = operator.post(f"/admin/strands/{shown}/retry")

    assert f'data-strand="{shown}"' in page.text
    assert "RuntimeError: the disk is full" in page.text
    assert retried.headers["location"] == "/admin/strands"
    with db.reading() as session:
        assert session.get(Strand, strand_id).status == StrandStatus.ACTIVE  # type: ignore[union-attr]
    assert f'data-strand="{shown}"' not in operator.get("/admin/strands").text


def test_a_user_who_is_not_an_operator_gets_none_of_it_and_the_attempt_is_audited(
    app: FastAPI, alice: Person, agent: Agent, db: Database
) -> None:
    visitor = signed_in(app, alice)

    pages = [
        visitor.get(path).status_code
        for path in ("/admin/hosts", "/admin/locations", "/admin/strands", "/admin/audit")
    ]
    drain = visitor.post("/admin/hosts/h1/drain")

    assert pages == [403, 403, 403, 403]
    assert drain.status_code == 403
    assert "Operator" not in visitor.get("/projects").text
    with db.reading() as session:
        refused = session.execute(
            select(AuditEvent.action, AuditEvent.outcome).where(
                AuditEvent.action == "admin.host.drain"
            )
        ).all()
    assert [tuple(r) for r in refused] == [("admin.host.drain", "failure")]

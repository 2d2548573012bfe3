"""`/v1/agent`: hosts join once with a join token and then prove who they are."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from nubis import hosts, locations
from nubis.db import Database
from nubis.models import Health, Host, HostEvent, Location
from nubis.models.engine import Semaphore
from tests.integration.api.people import problem

REPORT: dict[str, Any] = {
    "name": "h1",
    "arch": "x86_64",
    "cores": 8,
    "threads": 16,
    "memory_bytes": 32 * 2**30,
    "hugepages": 0,
    "disk_bytes": 500 * 2**30,
    "underlay_address": "fd00::1",
    "acceleration": "tcg",
}


def _join_token(db: Database, lifetime: timedelta = timedelta(hours=1)) -> str:
    with db.transaction() as session:
        location = session.scalars(select(Location)).first() or locations.create(
            session, "fra1", "2001:db8:1::/48", flooding="multicast"
        )
        return hosts.issue_join_token(session, location.id, lifetime)


def test_a_host_joins_with_a_join_token_and_reports_its_hardware(
    client: TestClient, db: Database
) -> None:
    answer = client.post("/v1/agent/register", json={"join_token": _join_token(db), "host": REPORT})
    assert answer.status_code == 201, answer.text
    assert answer.json()["host_id"].startswith("host-")
    with db.reading() as session:
        host = session.scalars(select(Host)).one()
        assert (host.name, host.cores, host.threads, host.memory_bytes) == ("h1", 8, 16, 32 * 2**30)
        assert (host.underlay_address, host.acceleration, host.health) == (
            "fd00::1",
            "tcg",
            "online",
        )
        assert answer.json()["credential"] not in host.credential_sha256
        assert host.monitor_id is not None
        kinds = session.scalars(select(HostEvent.kind).where(HostEvent.host_id == host.id)).all()
        assert kinds == ["joined"]


def test_a_join_token_works_once(client: TestClient, db: Database) -> None:
    token = _join_token(db)
    assert (
        client.post("/v1/agent/register", json={"join_token": token, "host": REPORT}).status_code
        == 201
    )
    again = client.post(
        "/v1/agent/register", json={"join_token": token, "host": {**REPORT, "name": "h2"}}
    )
    problem(again, 401, "unauthenticated")


def test_an_expired_join_token_is_refused(client: TestClient, db: Database) -> None:
    token = _join_token(db, timedelta(seconds=-1))
    problem(client.post("/v1/agent/register", json={"join_token": token, "host": REPORT}), 401)


def test_a_bad_report_is_refused_and_spends_nothing(client: TestClient, db: Database) -> None:
    token = _join_token(db)
    for bad in ({"cores": 0}, {"acceleration": "xen"}, {"underlay_address": "not-an-address"}):
        problem(
            client.post(
                "/v1/agent/register", json={"join_token": token, "host": {**REPORT, **bad}}
            ),
            422,
        )
    assert (
        client.post("/v1/agent/register", json={"join_token": token, "host": REPORT}).status_code
        == 201
    )


def test_a_size_or_count_beyond_what_the_store_keeps_is_refused_naming_the_field(
    client: TestClient, db: Database
) -> None:
    token = _join_token(db)
    for name, value in (("memory_bytes", 2**63), ("disk_bytes", 2**63), ("hugepages", 2**31)):
        refused = problem(
            client.post(
                "/v1/agent/register", json={"join_token": token, "host": {**REPORT, name: value}}
            ),
            422,
            "invalid_input",
        )
        assert list(refused["errors"]) == [f"host.{name}"]
    registered = client.post("/v1/agent/register", json={"join_token": token, "host": REPORT})
    assert registered.status_code == 201, registered.text
    auth = {"Authorization": f"Bearer {registered.json()['credential']}"}
    vm = {"id": "vm-00000000000000000000000000", "state": "running"}
    for body, field in (
        ({"revision": 2**31, "vms": []}, "revision"),
        ({"revision": 0, "vms": [{**vm, "reboots": 2**31}]}, "vms.0.reboots"),
        (
            {"revision": 0, "vms": [], "peers": [{"host": "h2", "silent_seconds": float("inf")}]},
            "peers.0.silent_seconds",
        ),
    ):
        refused = problem(
            client.post(
                "/v1/agent/status",
                content=json.dumps(body),
                headers={**auth, "content-type": "application/json"},
            ),
            422,
            "invalid_input",
        )
        assert list(refused["errors"]) == [field]
    with db.reading() as session:
        host = session.scalars(select(Host)).one()
        assert (host.observed_revision, host.hugepages, host.peer_silence) == (0, 0, {})


def test_a_heartbeat_needs_the_host_credential(client: TestClient, db: Database) -> None:
    registered = client.post(
        "/v1/agent/register", json={"join_token": _join_token(db), "host": REPORT}
    ).json()
    problem(client.post("/v1/agent/heartbeat", json={}), 401)
    problem(
        client.post("/v1/agent/heartbeat", json={}, headers={"Authorization": "Bearer nope"}), 401
    )
    beat = client.post(
        "/v1/agent/heartbeat",
        json={},
        headers={"Authorization": f"Bearer {registered['credential']}"},
    )
    assert beat.status_code == 204


def test_a_heartbeat_of_a_host_that_is_not_online_wakes_its_monitor(
    client: TestClient, db: Database
) -> None:
    registered = client.post(
        "/v1/agent/register", json={"join_token": _join_token(db), "host": REPORT}
    ).json()
    with db.transaction() as session:
        host = session.scalars(select(Host)).one()
        host.health = Health.UNREACHABLE
        monitor = host.monitor_id
    headers = {"Authorization": f"Bearer {registered['credential']}"}
    assert client.post("/v1/agent/heartbeat", json={}, headers=headers).status_code == 204
    with db.reading() as session:
        names = session.scalars(select(Semaphore.name).where(Semaphore.strand_id == monitor)).all()
    assert names == ["heartbeat"]

"""The host monitor turns missed heartbeats into `unreachable`, and a heartbeat back into
`online`, writing each change to the host's event log. (`dead` needs watchers that
confirm it: tests/integration/api/test_failover.py.)"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest
from sqlalchemy import select, update

from nubis import hosts, locations
from nubis.choices import StrandStatus
from nubis.clock import now
from nubis.config import Settings
from nubis.db import Database
from nubis.engine.dispatcher import Dispatcher
from nubis.models import Health, Host, HostEvent
from nubis.models.engine import Strand
from nubis.progs.host import HostMonitor, health_after
from nubis.protocol import HostReport
from tests.integration.engine.helpers import drain

SETTINGS = Settings(host_unreachable_seconds=10, host_dead_seconds=30, lease_seconds=30)


@pytest.fixture
def dispatcher(db: Database) -> Dispatcher:
    return Dispatcher(db, SETTINGS)


def _joined(db: Database) -> UUID:
    with db.transaction() as session:
        location = locations.create(session, "fra1", "2001:db8::/48", flooding="unicast")
        token = hosts.issue_join_token(session, location.id, timedelta(hours=1))
        report = HostReport(
            name="h1", arch="x86_64", cores=4, threads=8, memory_bytes=2**33, hugepages=0,
            disk_bytes=2**36, underlay_address="fd00::1", acceleration="tcg",
        )  # fmt: skip
        host, _ = HostMonitor.assemble(session, token, report, SETTINGS)
        return host.id


def _silent_for(db: Database, host_id: UUID, seconds: float) -> None:
    """The last heartbeat was `seconds` ago; the monitor looks now."""
    with db.transaction() as session:
        host = session.get(Host, host_id)
        assert host is not None
        host.last_heartbeat_at = now() - timedelta(seconds=seconds)
        session.execute(update(Strand).where(Strand.id == host.monitor_id).values(schedule=now()))


def _health(db: Database, host_id: UUID) -> tuple[str, list[str]]:
    with db.reading() as session:
        host = session.get(Host, host_id)
        assert host is not None
        events = session.scalars(
            select(HostEvent.detail)
            .where(HostEvent.host_id == host_id, HostEvent.kind == "health")
            .order_by(HostEvent.id)
        ).all()
        return host.health, [e.split(":")[0] for e in events]


def test_health_follows_the_silence() -> None:
    assert health_after(0, 10, 30) is Health.ONLINE
    assert health_after(9.9, 10, 30) is Health.ONLINE
    assert health_after(10, 10, 30) is Health.UNREACHABLE
    assert health_after(30, 10, 30) is Health.DEAD


def test_missed_heartbeats_make_a_host_unreachable_and_one_brings_it_back(
    db: Database, dispatcher: Dispatcher
) -> None:
    host_id = _joined(db)
    drain(dispatcher)
    assert _health(db, host_id) == ("online", [])

    _silent_for(db, host_id, 12)
    drain(dispatcher)
    assert _health(db, host_id) == ("unreachable", ["online -> unreachable"])

    with db.transaction() as session:
        host = session.get(Host, host_id)
        assert host is not None
        hosts.heartbeat(session, host)
    drain(dispatcher)
    assert _health(db, host_id) == ("online", ["online -> unreachable", "unreachable -> online"])


def test_a_host_alone_in_its_location_is_never_declared_dead(
    db: Database, dispatcher: Dispatcher
) -> None:
    host_id = _joined(db)
    drain(dispatcher)
    _silent_for(db, host_id, 300)
    drain(dispatcher)
    assert _health(db, host_id) == ("unreachable", ["online -> unreachable"])
    with db.reading() as session:
        alerts = session.scalars(
            select(HostEvent.detail).where(HostEvent.host_id == host_id, HostEvent.kind == "alert")
        ).all()
    assert len(alerts) == 1
    assert "not dead" in alerts[0]


def test_an_online_host_s_monitor_sleeps_until_it_could_turn_unreachable(
    db: Database, dispatcher: Dispatcher
) -> None:
    host_id = _joined(db)
    drain(dispatcher)
    with db.reading() as session:
        host = session.get(Host, host_id)
        assert host is not None
        monitor = session.get(Strand, host.monitor_id)
        assert monitor is not None
        wait = (monitor.schedule - host.last_heartbeat_at).total_seconds()
    assert 9 <= wait <= 10.5


def test_removing_a_host_ends_its_monitor(db: Database, dispatcher: Dispatcher) -> None:
    host_id = _joined(db)
    drain(dispatcher)
    with db.transaction() as session:
        host = session.get(Host, host_id)
        assert host is not None
        monitor = host.monitor_id
        hosts.remove(session, host)
    drain(dispatcher)
    with db.reading() as session:
        assert session.get(Host, host_id) is None
        ended = session.get(Strand, monitor)
        assert ended is not None
        assert ended.status == StrandStatus.EXITED

"""`nubis admin location …` and `nubis admin host …`, as an operator runs them."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner, Result

from nubis.cli import app
from nubis.config import Settings
from nubis.db import Database
from nubis.models import Host, Location
from nubis.progs.host import HostMonitor
from nubis.protocol import HostReport
from nubis.scheduling.allocator import place
from nubis.scheduling.stages import GIB, Request
from tests.integration.cli.conftest import Remote


@pytest.fixture
def cli(remote: Remote) -> CliRunner:
    """An operator's CLI, against the API over the test's database."""
    return remote.operator


def _run(cli: CliRunner, *args: str) -> Result:
    return cli.invoke(app, ["admin", *args])


def _join(db: Database, token: str, name: str = "h1") -> None:
    report = HostReport(
        name=name, arch="x86_64", cores=8, threads=16, memory_bytes=32 * GIB, hugepages=0,
        disk_bytes=500 * GIB, underlay_address="fd00::1", acceleration="tcg",
    )  # fmt: skip
    with db.transaction() as session:
        HostMonitor.assemble(session, token, report, Settings())


def test_an_operator_makes_a_location_and_a_host_joins_with_its_token(
    cli: CliRunner, db: Database
) -> None:
    made = _run(cli, "location", "create", "fra1", "--prefix", "2001:db8:1::/48")
    assert made.exit_code == 0, made.output
    listed = json.loads(_run(cli, "location", "list", "--json").stdout)
    assert [(loc["name"], loc["prefix"], loc["flooding"]) for loc in listed] == [
        ("fra1", "2001:db8:1::/48", "multicast")
    ]
    token = _run(cli, "host", "join-token", "--location", "fra1").stdout.strip()
    assert token.startswith("nubis_join_")
    _join(db, token)
    (host,) = json.loads(_run(cli, "host", "list", "--json").stdout)
    assert (host["name"], host["location"], host["health"]) == ("h1", "fra1", "online")
    assert host["allocation_state"] == "accepting"


def test_a_location_needs_an_ipv6_prefix(cli: CliRunner) -> None:
    reasons = {
        "10.0.0.0/8": "is not an IPv6 prefix",
        "nonsense": "is not an IPv6 prefix",
        "2001:db8::/64": "is too small: a location needs a /56 or larger",
    }
    for bad, reason in reasons.items():
        refused = _run(cli, "location", "create", "fra1", "--prefix", bad)
        assert refused.exit_code == 1
        assert reason in refused.stderr, refused.stderr


def test_a_location_s_flooding_is_changed_and_its_hosts_told(cli: CliRunner, db: Database) -> None:
    _run(cli, "location", "create", "fra1", "--prefix", "2001:db8:1::/48")
    _join(db, _run(cli, "host", "join-token", "--location", "fra1").stdout.strip())
    with db.reading() as session:
        before = session.scalars(select(Host.desired_revision)).one()

    changed = _run(cli, "location", "set", "fra1", "--flooding", "unicast")
    again = _run(cli, "location", "set", "fra1", "--flooding", "unicast")

    assert changed.stdout == "fra1 now floods by unicast.\n"
    assert again.stdout == "fra1 floods already by unicast.\n"
    (listed,) = json.loads(_run(cli, "location", "list", "--json").stdout)
    assert listed["flooding"] == "unicast"
    with db.reading() as session:
        assert session.scalars(select(Host.desired_revision)).one() == before + 1
    bad = _run(cli, "location", "set", "fra1", "--flooding", "broadcast")
    assert bad.exit_code == 2
    nowhere = _run(cli, "location", "set", "mars", "--flooding", "unicast")
    assert (nowhere.exit_code, nowhere.stderr) == (1, "error: no location 'mars'\n")


def test_drain_maintenance_and_undrain_are_in_the_event_log(cli: CliRunner, db: Database) -> None:
    _run(cli, "location", "create", "fra1", "--prefix", "2001:db8:1::/48")
    _join(db, _run(cli, "host", "join-token", "--location", "fra1").stdout.strip())
    assert _run(cli, "host", "drain", "h1").stdout == "h1 is now draining\n"
    assert _run(cli, "host", "drain", "h1").stdout == "h1 is already draining\n"
    assert _run(cli, "host", "maintenance", "h1").exit_code == 0
    assert _run(cli, "host", "undrain", "h1").exit_code == 0
    shown = json.loads(_run(cli, "host", "show", "h1", "--json").stdout)
    assert shown["allocation_state"] == "accepting"
    changes = [e.split(": ", 1)[1] for e in shown["events"]]
    assert changes[1:] == [
        "accepting -> draining: drained by an operator",
        "draining -> maintenance: put in maintenance by an operator",
        "maintenance -> accepting: undrained by an operator",
    ]


def test_a_host_holding_placements_cannot_be_removed(cli: CliRunner, db: Database) -> None:
    _run(cli, "location", "create", "fra1", "--prefix", "2001:db8:1::/48")
    _join(db, _run(cli, "host", "join-token", "--location", "fra1").stdout.strip())
    with db.transaction() as session:
        location = session.scalars(select(Location)).one()
        place(session, Request(location.id, 2, 4 * GIB, 20 * GIB), "vm-a")
    refused = _run(cli, "host", "remove", "h1")
    assert refused.exit_code == 1
    assert "still holds 1 placement" in refused.stderr


def test_check_reports_a_counter_that_is_not_the_sum_of_its_placements(
    cli: CliRunner, db: Database
) -> None:
    _run(cli, "location", "create", "fra1", "--prefix", "2001:db8:1::/48")
    _join(db, _run(cli, "host", "join-token", "--location", "fra1").stdout.strip())
    with db.transaction() as session:
        location = session.scalars(select(Location)).one()
        place(session, Request(location.id, 2, 4 * GIB, 20 * GIB), "vm-a")
    fine = _run(cli, "host", "check")
    assert fine.exit_code == 0
    assert "every counter equals the sum of its placements" in fine.stdout
    with db.transaction() as session:
        session.execute(update(Host).values(used_cores=3))
    found = _run(cli, "host", "check", "--json")
    assert found.exit_code == 1
    assert json.loads(found.stdout)["differences"] == [
        {"host": "h1", "counter": "cores", "recorded": 3, "placed": 2}
    ]
    assert "1 counter(s) differ" in found.stderr


def test_a_join_token_of_an_unknown_location_is_refused(cli: CliRunner) -> None:
    refused = _run(cli, "host", "join-token", "--location", "nowhere", "--expires-in", "1h")
    assert refused.exit_code == 1
    assert "no location 'nowhere'" in refused.stderr


def test_overcommit_ratios_change_capacity_but_never_below_what_is_held(
    cli: CliRunner, db: Database
) -> None:
    _run(cli, "location", "create", "fra1", "--prefix", "2001:db8:1::/48")
    _join(db, _run(cli, "host", "join-token", "--location", "fra1").stdout.strip())
    with db.transaction() as session:
        location = session.scalars(select(Location)).one()
        place(session, Request(location.id, 6, 4 * GIB, 20 * GIB), "vm-a")
    raised = _run(cli, "host", "overcommit", "h1", "--cpu", "2")
    assert raised.stdout == "h1: cpu ratio 2.0, memory ratio 1.0\n"
    with db.transaction() as session:
        location = session.scalars(select(Location)).one()
        place(session, Request(location.id, 8, 4 * GIB, 20 * GIB), "vm-b")
    refused = _run(cli, "host", "overcommit", "h1", "--cpu", "1")
    assert refused.exit_code == 1
    assert "holds more than those ratios allow" in refused.stderr

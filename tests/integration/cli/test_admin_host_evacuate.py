"""`nubis admin host evacuate`: a host to be emptied takes no new VMs, and says so."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from nubis.cli import app
from nubis.db import Database
from tests.integration.cli.conftest import Remote
from tests.integration.cli.test_admin_host import _join, _run


@pytest.fixture
def cli(remote: Remote) -> CliRunner:
    """An operator's CLI, against the API over the test's database."""
    return remote.operator


def test_an_evacuated_host_drains_and_logs_it(cli: CliRunner, db: Database) -> None:
    _run(cli, "location", "create", "fra1", "--prefix", "2001:db8:1::/48")
    _join(db, _run(cli, "host", "join-token", "--location", "fra1").stdout.strip())

    done = cli.invoke(app, ["admin", "host", "evacuate", "h1"])

    assert done.exit_code == 0, done.output
    assert done.stdout == "Evacuating h1 (draining): 0 VM(s) move to other hosts.\n"
    shown = json.loads(_run(cli, "host", "show", "h1", "--json").stdout)
    assert shown["allocation_state"] == "draining"
    assert any(" evacuate: evacuation asked by an operator" in e for e in shown["events"])


def test_evacuating_a_host_that_is_not_there_fails(cli: CliRunner) -> None:
    refused = cli.invoke(app, ["admin", "host", "evacuate", "nowhere"])
    assert refused.exit_code == 1
    assert "no host 'nowhere'" in refused.stderr

"""`nubis admin` from an operator's laptop: every command but the bootstrap ones goes
through the API with the operator's token (the CLI's database is out of reach), a user
who is not an operator is refused, and what the operator changes is in the audit log.
`nubis admin bootstrap` alone, with `db upgrade`, uses the database: once, on an empty
store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner, Result

from nubis.cli import app
from nubis.db import Database
from nubis.models import User
from tests.integration.cli.conftest import Remote
from tests.integration.cli.test_admin_host import _join

COMMANDS = [
    ["location", "create", "fra1", "--prefix", "2001:db8:1::/48"],
    ["location", "list"],
    ["location", "set", "fra1", "--flooding", "unicast"],
    ["host", "join-token", "--location", "fra1"],
    ["host", "list"],
    ["host", "show", "h1"],
    ["host", "drain", "h1"],
    ["host", "undrain", "h1"],
    ["host", "maintenance", "h1"],
    ["host", "evacuate", "h1"],
    ["host", "overcommit", "h1", "--cpu", "2"],
    ["host", "check"],
    ["host", "remove", "h1"],
    ["image", "list"],
    ["image", "delete", "tiny"],
    ["strand", "list"],
    ["strand", "show", "st-" + "0" * 26],
    ["strand", "retry", "st-" + "0" * 26],
    ["user", "list"],
    ["user", "create", "zed", "--email", "zed@example.com"],
    ["user", "disable", "olga"],
    ["user", "enable", "olga"],
    ["user", "operator", "uma"],
    ["audit"],
]
"""Every `nubis admin` command that talks to the API (in an order an operator could
run them in)."""


def _admin(cli: CliRunner, *args: str) -> Result:
    return cli.invoke(app, ["admin", *args])


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_user_who_is_not_an_operator_is_refused_every_admin_command(
    remote: Remote, command: list[str]
) -> None:
    refused = _admin(remote.user, *command)
    assert (refused.exit_code, refused.stderr) == (1, "error: only operators may do this\n")
    assert refused.stdout == ""


def test_an_operator_runs_the_admin_commands_against_the_api_alone(
    remote: Remote, db: Database
) -> None:
    made = _admin(remote.operator, *COMMANDS[0])
    assert made.stdout == "Created location fra1 (2001:db8:1::/48, multicast flooding).\n"
    token = _admin(remote.operator, "host", "join-token", "--location", "fra1").stdout.strip()
    assert re.fullmatch(r"nubis_join_[\w-]{43}", token), token
    _join(db, token)
    drained = _admin(remote.operator, "host", "drain", "h1")
    assert drained.stdout == "h1 is now draining\n"

    audit = _admin(remote.operator, "audit", "--json")
    assert audit.exit_code == 0, audit.output
    events = [
        (e["action"], e["outcome"], e["email"], e["detail"]) for e in json.loads(audit.stdout)
    ]
    assert events[0] == (
        "admin.host.drain",
        "success",
        "olga@example.com",
        "h1: accepting -> draining",
    )
    assert events[1][:3] == ("admin.location.join_token", "success", "olga@example.com")
    assert events[2] == (
        "admin.location.create",
        "success",
        "olga@example.com",
        "fra1: 2001:db8:1::/48, multicast flooding",
    )
    host_id = json.loads(_admin(remote.operator, "host", "show", "h1", "--json").stdout)["id"]
    about_h1 = _admin(remote.operator, "audit", "--target", host_id, "--json")
    assert [e["action"] for e in json.loads(about_h1.stdout)] == ["admin.host.drain"]
    # The CLI's own NUBIS_DATABASE_URL names a directory that was never made.
    assert not any(remote.data_dir.parent.glob("*/absent"))


def test_a_refused_change_is_in_the_audit_log_with_its_reason(remote: Remote) -> None:
    refused = _admin(remote.operator, "host", "drain", "mars")
    assert (refused.exit_code, refused.stderr) == (1, "error: no host 'mars'\n")
    _admin(remote.user, "host", "evacuate", "mars")

    audit = json.loads(_admin(remote.operator, "audit", "--json").stdout)
    assert [(e["action"], e["outcome"], e["email"], e["target"], e["detail"]) for e in audit] == [
        ("admin.host.evacuate", "failure", "uma@example.com", "mars", "only operators may do this"),
        ("admin.host.drain", "failure", "olga@example.com", "mars", "no host 'mars'"),
    ]


def test_bootstrap_makes_the_first_operator_of_an_empty_store_and_only_that(
    database_url: str, db: Database
) -> None:
    cli = CliRunner(env={"NUBIS_DATABASE_URL": database_url, "COLUMNS": "400"})
    first = cli.invoke(
        app, ["admin", "bootstrap", "root", "--email", "root@example.com", "--password-stdin"],
        input="a long password\n",
    )  # fmt: skip
    assert first.exit_code == 0, first.output
    assert re.fullmatch(r"Created user root \(root@example\.com, usr-\w{26}\)\.\n", first.stdout)

    second = cli.invoke(app, ["admin", "bootstrap", "toor", "--email", "toor@example.com"])
    assert second.exit_code == 1
    assert second.stderr == (
        "error: the store has users already: an operator makes more with "
        "`nubis admin user create` (through the API)\n"
    )
    with db.reading() as session:
        made = session.execute(select(User.name, User.is_operator)).all()
    assert [tuple(row) for row in made] == [("root", True)]


def test_admin_commands_without_a_token_say_how_to_get_one(tmp_path: Path) -> None:
    cli = CliRunner(env={"NUBIS_TOKEN": None, "XDG_CONFIG_HOME": f"{tmp_path}/config"})
    refused = cli.invoke(app, ["admin", "host", "list"])
    assert refused.exit_code == 1
    assert refused.stderr == (
        "error: not logged in (profile default): run `nubis login` or set NUBIS_TOKEN\n"
    )

"""`nubis admin strand ...` and `nubis admin db upgrade`, as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import update
from typer.testing import CliRunner, Result

from nubis.choices import StrandStatus
from nubis.cli import app
from nubis.db import Database
from nubis.db.migrate import current_revision, head_revision
from nubis.engine import Prog, label, start
from nubis.ids import Kind, format_id, new_id
from nubis.models.engine import Strand
from tests.conftest import REPO
from tests.integration.cli.conftest import Remote

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "prog.py", line 3, in start\n'
    "RuntimeError: the disk is full\n"
)


class Waiting(Prog):
    """Never run here: no worker takes these strands in these tests."""

    @label
    def start(self) -> None:
        self.nap(3600)

    @label
    def later(self) -> None:
        self.exit()


class Broken(Prog):
    @label
    def start(self) -> None:
        raise RuntimeError("the disk is full")


@pytest.fixture
def cli(remote: Remote) -> CliRunner:
    """An operator's CLI, against the API over the test's database."""
    return remote.operator


def _run(cli: CliRunner, *args: str) -> Result:
    return cli.invoke(app, list(args))


def _start(
    db: Database, prog: type[Prog], frame: dict[str, Any] | None = None, **options: Any
) -> UUID:
    with db.transaction() as session:
        return start(session, prog, frame, **options)


def _fail(db: Database, strand_id: UUID, tries: int = 10) -> None:
    with db.transaction() as session:
        session.execute(
            update(Strand)
            .where(Strand.id == strand_id)
            .values(status=StrandStatus.FAILED, tries=tries, last_error=TRACEBACK)
        )


def _strand(db: Database, strand_id: UUID) -> Strand:
    with db.transaction() as session:
        found = session.get(Strand, strand_id)
        assert found is not None
        return found


def _sid(strand_id: UUID) -> str:
    return format_id(Kind.STRAND, strand_id)


def test_list_shows_every_strand(db: Database, cli: CliRunner) -> None:
    waiting = _start(db, Waiting, {"n": 1})
    broken = _start(db, Broken)
    result = _run(cli, "admin", "strand", "list")
    assert result.exit_code == 0, result.output
    assert _sid(waiting) in result.stdout
    assert _sid(broken) in result.stdout
    assert Waiting.name() in result.stdout
    assert Broken.name() in result.stdout


def test_list_of_no_strands_is_an_empty_table(cli: CliRunner) -> None:
    result = _run(cli, "admin", "strand", "list", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []


def test_list_json_has_the_fields_of_each_strand(db: Database, cli: CliRunner) -> None:
    parent = _start(db, Waiting)
    child = _start(db, Waiting, label="later", parent_id=parent)
    result = _run(cli, "admin", "strand", "list", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["id"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {_sid(parent), _sid(child)}
    row = rows[_sid(child)]
    assert set(row) == {
        "id",
        "prog",
        "label",
        "status",
        "tries",
        "schedule",
        "leased",
        "parent",
        "error",
    }
    assert row["prog"] == Waiting.name()
    assert row["label"] == "later"
    assert row["status"] == "active"
    assert row["tries"] == 0
    assert row["leased"] is False
    assert row["parent"] == _sid(parent)
    assert row["error"] is None
    assert rows[_sid(parent)]["parent"] is None


def test_list_puts_failed_strands_first_with_their_last_error_line(
    db: Database, cli: CliRunner
) -> None:
    first = _start(db, Waiting)
    broken = _start(db, Broken)
    _fail(db, broken)
    result = _run(cli, "admin", "strand", "list", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["id"] for row in rows] == [_sid(broken), _sid(first)]
    assert rows[0]["error"] == "RuntimeError: the disk is full"


def test_list_filters_by_status(db: Database, cli: CliRunner) -> None:
    _start(db, Waiting)
    broken = _start(db, Broken)
    _fail(db, broken)
    result = _run(cli, "admin", "strand", "list", "--status", "failed", "--json")
    assert result.exit_code == 0, result.output
    assert [row["id"] for row in json.loads(result.stdout)] == [_sid(broken)]
    table = _run(cli, "admin", "strand", "list", "--status", "failed")
    assert _sid(broken) in table.stdout
    assert "RuntimeError: the disk is full" in table.stdout
    assert Waiting.name() not in table.stdout


def test_list_refuses_an_unknown_status(cli: CliRunner) -> None:
    result = _run(cli, "admin", "strand", "list", "--status", "sleeping")
    assert result.exit_code == 2
    assert "sleeping" in result.stderr


def test_list_honours_the_limit(db: Database, cli: CliRunner) -> None:
    for _ in range(3):
        _start(db, Waiting)
    result = _run(cli, "admin", "strand", "list", "--limit", "2", "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 2


def test_show_prints_the_stack_and_the_error(db: Database, cli: CliRunner) -> None:
    broken = _start(db, Broken, {"disk": "vda", "size": 42})
    _fail(db, broken)
    result = _run(cli, "admin", "strand", "show", _sid(broken))
    assert result.exit_code == 0, result.output
    assert _sid(broken) in result.stdout
    assert "'disk': 'vda'" in result.stdout
    assert "Traceback (most recent call last):" in result.stdout
    assert "RuntimeError: the disk is full" in result.stdout
    assert "failed" in result.stdout


def test_show_json_has_the_whole_strand(db: Database, cli: CliRunner) -> None:
    waiting = _start(db, Waiting, {"disk": "vda"})
    result = _run(cli, "admin", "strand", "show", _sid(waiting).upper(), "--json")
    assert result.exit_code == 0, result.output
    detail = json.loads(result.stdout)
    assert detail["id"] == _sid(waiting)
    assert detail["stack"] == [{"data": {"disk": "vda"}, "link": None}]
    assert detail["semaphores"] == []
    assert detail["error"] is None
    assert detail["finished_at"] is None
    assert detail["created_at"]


def test_show_of_an_unknown_strand_fails_with_the_reason(cli: CliRunner) -> None:
    missing = _sid(new_id())
    result = _run(cli, "admin", "strand", "show", missing)
    assert result.exit_code == 1
    assert result.stderr == f"error: no strand {missing}\n"
    assert result.stdout == ""


def _nubis(environment: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("NUBIS_")}
    return subprocess.run(
        [sys.executable, "-m", "nubis", *args],
        env={**inherited, **environment, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("command", ["show", "retry"])
def test_a_malformed_id_fails_with_the_reason(remote: Remote, command: str) -> None:
    # Run as a user runs it: the CLI's error handling lives in `nubis.cli.main`,
    # which CliRunner does not go through.
    result = _nubis(remote.environment, "admin", "strand", command, "vm-" + "0" * 26)
    assert result.returncode == 1
    assert (
        result.stderr == "error: 'vm-00000000000000000000000000' is not a strand id "
        "(expected st-…)\n"
    )
    assert result.stdout == ""
    malformed = _nubis(remote.environment, "admin", "strand", command, "st-bad")
    assert malformed.returncode == 1
    assert malformed.stderr == "error: 'st-bad' is not a well-formed id\n"
    assert "Traceback" not in malformed.stderr


def test_retry_revives_a_failed_strand(db: Database, cli: CliRunner) -> None:
    broken = _start(db, Broken)
    _fail(db, broken, tries=10)
    result = _run(cli, "admin", "strand", "retry", _sid(broken))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{_sid(broken)} will run again now\n"
    strand = _strand(db, broken)
    assert strand.status == StrandStatus.ACTIVE
    assert strand.tries == 0
    assert strand.lease_owner is None


def test_retry_refuses_a_strand_that_has_not_failed(db: Database, cli: CliRunner) -> None:
    waiting = _start(db, Waiting)
    result = _run(cli, "admin", "strand", "retry", _sid(waiting))
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {_sid(waiting)} is active, not failed; only a failed strand can be retried\n"
    )
    assert _strand(db, waiting).status == StrandStatus.ACTIVE


def test_retry_refuses_a_strand_retried_already(db: Database, cli: CliRunner) -> None:
    broken = _start(db, Broken)
    _fail(db, broken)
    assert _run(cli, "admin", "strand", "retry", _sid(broken)).exit_code == 0
    again = _run(cli, "admin", "strand", "retry", _sid(broken))
    assert again.exit_code == 1
    assert "is active, not failed" in again.stderr


def test_retry_of_an_unknown_strand_fails_with_the_reason(cli: CliRunner) -> None:
    missing = _sid(new_id())
    result = _run(cli, "admin", "strand", "retry", missing)
    assert result.exit_code == 1
    assert result.stderr == f"error: no strand {missing}\n"


def test_db_upgrade_creates_the_schema_then_finds_it_current(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "nubis.db"
    cli = CliRunner(env={"NUBIS_DATABASE_URL": f"sqlite:///{path}", "COLUMNS": "400"})
    head = head_revision()
    first = _run(cli, "admin", "db", "upgrade")
    assert first.exit_code == 0, first.output
    assert first.stdout == f"upgraded the schema from nothing to {head}\n"
    assert path.exists()
    second = _run(cli, "admin", "db", "upgrade")
    assert second.exit_code == 0, second.output
    assert second.stdout == f"the schema is current ({head})\n"
    db = Database.connect(f"sqlite:///{path}")
    try:
        assert current_revision(db) == head
        with db.transaction() as session:
            assert session.get(Strand, new_id()) is None
    finally:
        db.dispose()


def test_db_upgrade_uses_the_data_dir_by_default(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli = CliRunner(env={"NUBIS_DATA_DIR": str(data), "NUBIS_DATABASE_URL": None, "COLUMNS": "400"})
    result = _run(cli, "admin", "db", "upgrade")
    assert result.exit_code == 0, result.output
    assert "upgraded the schema from nothing" in result.stdout
    assert (data / "nubis.db").is_file()

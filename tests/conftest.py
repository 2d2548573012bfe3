"""Stores for tests: every database test runs on SQLite and on PostgreSQL.

PostgreSQL is not optional: if it does not answer, the tests that need it fail.
Each test gets its own database, cloned from a template migrated once per run, and
drops it afterwards, so two runs on one server never collide.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from argon2 import PasswordHasher, profiles
from sqlalchemy.engine import make_url
from xdist.remote import Producer  # type: ignore[import-untyped]
from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

from nubis.auth import passwords
from nubis.db import Database
from nubis.db.migrate import upgrade

E2E = "e2e"
POSTGRES_URL = os.environ.get(
    "NUBIS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
STORES = ["sqlite", "postgresql"]
REPO = Path(__file__).resolve().parent.parent


def _admin_conninfo() -> str:
    return make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(hide_password=False)


def postgres_database_url(name: str) -> str:
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


def create_database(name: str, template: str | None = None) -> None:
    with psycopg.connect(_admin_conninfo(), autocommit=True) as connection:
        suffix = f' TEMPLATE "{template}"' if template else ""
        connection.execute(f'CREATE DATABASE "{name}"{suffix}')


def drop_database(name: str) -> None:
    with psycopg.connect(_admin_conninfo(), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class _Dropper:
    """Drops the test databases in a thread of its own: a drop waits for PostgreSQL to
    remove the files (0.1 to 0.9 s each here), and a test need not wait for it."""

    def __init__(self) -> None:
        self._names: queue.Queue[str | None] = queue.Queue()
        self.failures: list[str] = []
        self._thread = threading.Thread(target=self._run, name="drop-databases", daemon=True)
        self._thread.start()

    def later(self, name: str) -> None:
        self._names.put(name)

    def _run(self) -> None:
        while (name := self._names.get()) is not None:
            try:
                drop_database(name)
            except psycopg.Error as error:  # the others are still dropped
                self.failures.append(f"{name}: {error}")

    def finish(self) -> None:
        """Drop what is left, then stop; an error if a database could not be dropped."""
        self._names.put(None)
        self._thread.join()
        assert self.failures == [], f"test databases left behind: {self.failures}"


_dropper = _Dropper()


def drop_database_later(name: str) -> None:
    """Drop the database `name` (nobody uses it any more) soon, and before the run ends."""
    _dropper.later(name)


def _migrated(url: str) -> None:
    db = Database.connect(url)
    try:
        upgrade(db)
    finally:
        db.dispose()


@pytest.fixture(autouse=True, scope="session")
def cheapest_password_hashing() -> Iterator[None]:
    """argon2id at its cheapest parameters (30 µs a hash, not 130 ms): users are made and
    log in in most tests, and none of them is about what a hash costs. Hashes made with
    other parameters still verify (a hash names its own)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(passwords, "_hasher", PasswordHasher.from_parameters(profiles.CHEAPEST))
        passwords._dummy.cache_clear()
        yield
    passwords._dummy.cache_clear()


@pytest.fixture(scope="session")
def run_id() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def postgres_template(run_id: str) -> Iterator[str]:
    name = f"nubis_test_{run_id}_template"
    create_database(name)
    try:
        _migrated(postgres_database_url(name))
        yield name
    finally:
        _dropper.finish()  # the clones first: a template in use cannot be dropped
        drop_database(name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "nubis.db"
    _migrated(f"sqlite:///{path}")
    return path


@pytest.fixture(params=STORES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path, run_id: str) -> Iterator[str]:
    """The URL of a fresh, migrated database of each store."""
    if request.param == "sqlite":
        path = tmp_path / "nubis.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    template = request.getfixturevalue("postgres_template")
    name = f"nubis_test_{run_id}_{uuid.uuid4().hex[:8]}"
    create_database(name, template)
    try:
        yield postgres_database_url(name)
    finally:
        drop_database_later(name)


@pytest.fixture
def postgres_url(run_id: str, postgres_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database, for tests that only PostgreSQL can run."""
    name = f"nubis_test_{run_id}_{uuid.uuid4().hex[:8]}"
    create_database(name, postgres_template)
    try:
        yield postgres_database_url(name)
    finally:
        drop_database_later(name)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database.connect(database_url)
    try:
        yield database
    finally:
        database.dispose()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """As root, where `make test` has installed every tool the suite needs (as in CI), a
    test that skips hides a check: it fails instead. A developer's unprivileged run
    still skips what needs root or a missing tool."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and os.geteuid() == 0 and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped as root, where every tool is installed: {reason}"


DEAREST_E2E = ("test_failover", "test_vms", "test_networks", "test_cloud_harness")
"""The end-to-end files that take longest (minutes each, measured with --durations),
dearest first: they go first, so that what a worker takes up at the end is short
(the longest work first, whoever takes it)."""


def _e2e_rank(scope: str) -> int:
    name = Path(scope).stem
    return DEAREST_E2E.index(name) if name in DEAREST_E2E else len(DEAREST_E2E)


class _Units(LoadScopeScheduling):  # type: ignore[misc]
    """How `make test` (`pytest -n 3 --no-loadscope-reorder`) shares the suite out: each
    test file is a unit of work (its module fixtures, a cloud for instance, are made
    once). The first worker runs the end-to-end files, the dearest first (DEAREST_E2E,
    then the others in order), the others the unit and integration files; a worker
    that has run out of its own kind takes the other's: the cheapest end-to-end file
    left, while the first worker goes on with the dearest. The e2e files' waits
    (guests booting, failure windows) leave the CPU idle that the other workers' tests
    use; no worker is left with a long file at the end, and no file's tests ever run
    on two workers."""

    def _split_scope(self, nodeid: str) -> str:
        return nodeid.split("::", maxsplit=1)[0]

    def _assign_work_unit(self, node: Any) -> None:
        e2e = [scope for scope in self.workqueue if scope.startswith(f"tests/{E2E}/")]
        rest = [scope for scope in self.workqueue if scope not in e2e]
        e2e.sort(key=_e2e_rank)  # stable: the others keep their order
        if node is self.nodes[0]:
            scope = e2e[0] if e2e else rest[0]
        else:
            scope = rest[0] if rest else e2e[-1]
        self.workqueue.move_to_end(scope, last=False)
        super()._assign_work_unit(node)


# optional: the suite also runs without xdist (-p no:xdist), where this hook is unknown.
@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> _Units:
    missing = [name for name in DEAREST_E2E if not (REPO / "tests" / E2E / f"{name}.py").exists()]
    if missing:
        raise pytest.UsageError(f"DEAREST_E2E names files that do not exist: {missing}")
    return _Units(config, log)

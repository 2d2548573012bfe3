"""A real `nubis api` process over each store, shared by the tests of one module.

Starting the API takes seconds, so it runs once per module and store, not once per test;
the tests that share it keep apart by using people and projects of their own.

`remote` is the API over a test's own database instead, served by uvicorn in a thread
of the test (a fraction of a second to start), for the `nubis admin` tests that need
an empty store: the CLI reaches it over HTTP only, as an operator's laptop would.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import httpx
import pytest
import uvicorn
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from nubis.api import create_app
from nubis.auth import accounts, tokens
from nubis.config import Settings
from nubis.db import Database
from nubis.models import Membership, Project, Role
from nubis.secretbox import SecretBox
from tests.conftest import (
    REPO,
    STORES,
    create_database,
    drop_database_later,
    postgres_database_url,
)

START_SECONDS = 30.0
STOP_SECONDS = 15.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def nubis_environment(**values: str) -> dict[str, str]:
    """The inherited environment without any NUBIS_ setting, plus `values`."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("NUBIS_") and name not in ("FORCE_COLOR", "TTY_COMPATIBLE")
    }
    environment.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", **values)
    return environment


def nubis_command() -> list[str]:
    """The installed `nubis` console script, else the package run as a module."""
    script = Path(sys.executable).with_name("nubis")
    return [str(script)] if script.exists() else [sys.executable, "-m", "nubis"]


@dataclass(frozen=True)
class Api:
    """A running `nubis api` and the store under it."""

    url: str
    database_url: str
    data_dir: Path


@pytest.fixture(scope="module", params=STORES)
def shared_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, run_id: str
) -> Iterator[str]:
    """A fresh, migrated database of each store, for all the tests of one module
    (as `database_url`, which is made anew for every test)."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("store") / "nubis.db"
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


def _wait_healthy(process: subprocess.Popen[bytes], url: str, store: str, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"nubis api exited with {process.returncode}:\n{log.read_text()}")
        try:
            response = httpx.get(f"{url}/v1/health", timeout=1.0)
        except httpx.TransportError:
            time.sleep(0.1)
            continue
        assert response.json() == {"status": "ok", "database": store}, response.text
        return
    pytest.fail(f"{url} did not answer within {START_SECONDS} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def api(shared_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """`nubis api` on a free loopback port, stopped (and its log checked) at the end."""
    data_dir = tmp_path_factory.mktemp("data")
    log = data_dir / "api.log"
    port = free_port()
    environment = nubis_environment(
        NUBIS_DATABASE_URL=shared_database_url, NUBIS_DATA_DIR=str(data_dir)
    )
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*nubis_command(), "api", "--host", "127.0.0.1", "--port", str(port)],
            env=environment,
            cwd=data_dir,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(process, url, make_url(shared_database_url).get_backend_name(), log)
        yield Api(url, shared_database_url, data_dir)
    finally:
        process.terminate()
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    assert "Traceback" not in log.read_text(), log.read_text()


@pytest.fixture(scope="module")
def store(api: Api) -> Iterator[Database]:
    """The API's database, for setting up people and checking what changed."""
    database = Database.connect(api.database_url)
    try:
        yield database
    finally:
        database.dispose()


@dataclass(frozen=True)
class Member:
    """A new user, member of a new project of their own; `env` makes the CLI act as them
    in it."""

    tag: str
    project: str
    project_id: UUID
    env: dict[str, str]


def new_member(api: Api, store: Database) -> Member:
    tag = uuid.uuid4().hex[:8]
    with store.transaction() as session:
        user = accounts.create_user(session, f"u-{tag}", f"{tag}@example.com", uuid.uuid4().hex)
        _, secret = tokens.issue(session, user.id, "cli")
        project = Project(name=f"p-{tag}")
        session.add(project)
        session.flush()
        session.add(Membership(project_id=project.id, user_id=user.id, role=Role.MEMBER))
    env = {"NUBIS_API_URL": api.url, "NUBIS_TOKEN": secret, "NUBIS_PROJECT": project.name}
    return Member(tag, project.name, project.id, env)


def new_operator(api: Api, store: Database) -> dict[str, str]:
    """A new operator, made in the store with an unscoped token; the environment that
    makes the CLI act as them against `api`."""
    tag = uuid.uuid4().hex[:8]
    with store.transaction() as session:
        user = accounts.create_user(
            session, f"op-{tag}", f"op-{tag}@example.com", uuid.uuid4().hex, operator=True
        )
        _, secret = tokens.issue(session, user.id, "cli")
    return {"NUBIS_API_URL": api.url, "NUBIS_TOKEN": secret}


@dataclass(frozen=True)
class Remote:
    """The API over the test's own database, on a loopback port; CliRunners that act as
    an operator and as a user who is not one."""

    url: str
    data_dir: Path
    operator: CliRunner
    user: CliRunner
    environment: dict[str, str]
    """The operator's, for a `nubis` subprocess."""


def _runner(url: str, token: str, home: Path) -> CliRunner:
    # A database the CLI cannot open: every command must go through the API.
    absent = f"sqlite:///{home / 'absent' / 'nubis.db'}"
    return CliRunner(
        env={
            "NUBIS_API_URL": url,
            "NUBIS_TOKEN": token,
            "NUBIS_DATABASE_URL": absent,
            "XDG_CONFIG_HOME": str(home / "config"),
            "COLUMNS": "400",
        }
    )


@pytest.fixture
def remote(db: Database, tmp_path: Path) -> Iterator[Remote]:
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir, database_url="sqlite://")
    app = create_app(db, SecretBox.from_file(tmp_path / "secret.key"), settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="remote-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the API did not start")
        time.sleep(0.02)
    with db.transaction() as session:
        olga = accounts.create_user(session, "olga", "olga@example.com", "x" * 16, operator=True)
        _, operator_token = tokens.issue(session, olga.id, "cli")
        uma = accounts.create_user(session, "uma", "uma@example.com", "x" * 16)
        _, user_token = tokens.issue(session, uma.id, "cli")
    url = f"http://127.0.0.1:{port}"
    try:
        yield Remote(
            url,
            data_dir,
            _runner(url, operator_token, tmp_path / "olga"),
            _runner(url, user_token, tmp_path / "uma"),
            {"NUBIS_API_URL": url, "NUBIS_TOKEN": operator_token, "COLUMNS": "400"},
        )
    finally:
        server.should_exit = True
        thread.join(STOP_SECONDS)

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from nubis.config import EngineSettings
from nubis.db import Database
from nubis.engine.dispatcher import Dispatcher
from tests.conftest import REPO
from tests.integration.engine import progs


@pytest.fixture
def db(db: Database) -> Database:
    progs.metadata.create_all(db.engine)
    return db


@pytest.fixture
def settings() -> EngineSettings:
    return EngineSettings(
        lease_seconds=30,
        max_tries=3,
        backoff_base_seconds=0.01,
        backoff_max_seconds=0.05,
        idle_wait_seconds=5,
    )


@pytest.fixture
def dispatcher(db: Database, settings: EngineSettings) -> Dispatcher:
    return Dispatcher(db, settings)


SpawnWorker = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def spawn_worker() -> Iterator[SpawnWorker]:
    """Start `nubis worker` processes; every one is killed when the test ends."""
    started: list[subprocess.Popen[bytes]] = []

    def spawn(url: str, *, threads: int = 2, **env: str) -> subprocess.Popen[bytes]:
        environment = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "NUBIS_DATABASE_URL": url,
            "NUBIS_LOG_LEVEL": "WARNING",
            **env,
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "nubis", "worker", "--threads", str(threads)],
            env=environment,
            cwd=REPO,
        )
        started.append(process)
        return process

    yield spawn
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(10)

"""How often the control plane asks its database while idle hosts long-poll.

    .venv/bin/python bench/long_poll.py [--quick] [--hosts N]

Joins N hosts (default 100) to an API served by uvicorn in this process, on SQLite and
on PostgreSQL, and has each long-poll its desired state as an agent does (`wait` = the
agent's 2 s interval) while nothing changes. It counts every statement the API runs
and prints statements per second for each store; the last line is one JSON object of
every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import event

POLL_WAIT = 2.0
"""An agent's long poll waits its interval."""
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.store import postgres_database  # noqa: E402
from nubis import hosts as host_service  # noqa: E402
from nubis import locations  # noqa: E402
from nubis.api import create_app  # noqa: E402
from nubis.config import Settings  # noqa: E402
from nubis.db import Database  # noqa: E402
from nubis.db.migrate import upgrade  # noqa: E402
from nubis.secretbox import SecretBox  # noqa: E402


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Statements:
    """A count of the statements a database ran."""

    def __init__(self) -> None:
        self.value = 0

    def count(self, *_args: object) -> None:
        self.value += 1


@contextmanager
def _serving(url: str, data_dir: Path) -> Iterator[tuple[str, Any, _Statements]]:
    """The API on `url`'s store: its base URL, its database, and a live count of the
    statements it runs."""
    db = Database.connect(url, pool_size=20)
    upgrade(db)
    statements = _Statements()
    event.listen(db.engine, "before_cursor_execute", statements.count)
    box = SecretBox.from_file(data_dir / "secret.key")
    app = create_app(db, box, Settings(data_dir=data_dir, database_url=url))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", db, statements
    finally:
        server.should_exit = True
        thread.join(10)
        db.dispose()


def _join(base: str, db: Any, hosts: int) -> list[str]:
    """`hosts` new hosts of a new location; their credentials."""
    with db.transaction() as session:
        location = locations.create(session, "bench1", "2001:db8:77::/48", flooding="unicast")
        tokens = [
            host_service.issue_join_token(session, location.id, timedelta(hours=1))
            for _ in range(hosts)
        ]
    credentials = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for number, token in enumerate(tokens):
            report = {
                "name": f"b{number}",
                "arch": "x86_64",
                "cores": 8,
                "threads": 16,
                "memory_bytes": 32 * 2**30,
                "hugepages": 0,
                "disk_bytes": 2**40,
                "underlay_address": f"fd00:77::{number + 1:x}",
                "acceleration": "tcg",
            }
            answer = client.post("/v1/agent/register", json={"join_token": token, "host": report})
            answer.raise_for_status()
            credentials.append(answer.json()["credential"])
    return credentials


class _Window:
    """The stretch of time the figures count: statements run and polls answered in it."""

    def __init__(self) -> None:
        self.open = False
        self.polls = 0
        self.waiting = 0
        """Hosts past their first fetch of the desired state, in their long polls."""


async def _poll_until(
    base: str, credential: str, deadline: Callable[[], float], window: _Window
) -> None:
    """Long-poll as an idle agent would: the current revision, then wait past it."""
    headers = {"Authorization": f"Bearer {credential}"}
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=headers) as client:
        first = await client.get("/v1/agent/desired", params={"after": -1})
        revision = first.json()["revision"]
        window.waiting += 1
        while time.monotonic() < deadline():
            answer = await client.get(
                "/v1/agent/desired", params={"after": revision, "wait": POLL_WAIT}
            )
            answer.raise_for_status()
            window.polls += window.open


def _measure(url: str, hosts: int, seconds: float) -> dict[str, float]:
    with (
        tempfile.TemporaryDirectory(prefix="nubis-bench-") as folder,
        _serving(url, Path(folder)) as (base, db, statements),
    ):
        credentials = _join(base, db, hosts)
        window = _Window()

        async def run() -> tuple[int, float]:
            deadline = math.inf
            pollers = [_poll_until(base, c, lambda: deadline, window) for c in credentials]
            running = asyncio.gather(*pollers)
            # Every host has its desired state and waits for a change before the count.
            while window.waiting < len(credentials):
                await asyncio.sleep(0.1)
            await asyncio.sleep(POLL_WAIT)
            deadline = time.monotonic() + seconds
            window.open, before, began = True, statements.value, time.monotonic()
            await asyncio.sleep(seconds)
            window.open, counted, elapsed = (
                False,
                statements.value - before,
                time.monotonic() - began,
            )
            await running
            return counted, elapsed

        counted, elapsed = asyncio.run(run())
        return {
            "statements_per_second": round(counted / elapsed, 1),
            "polls_per_second": round(window.polls / elapsed, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 s per store, not 30 s")
    parser.add_argument("--hosts", type=int, default=100)
    options = parser.parse_args()
    seconds = 10.0 if options.quick else 30.0
    figures: dict[str, object] = {"hosts": options.hosts, "seconds": seconds}
    with tempfile.TemporaryDirectory(prefix="nubis-bench-") as folder:
        sqlite = _measure(f"sqlite:///{folder}/nubis.db", options.hosts, seconds)
    print(f"sqlite: {sqlite}", flush=True)
    with postgres_database() as url:
        postgresql = _measure(url, options.hosts, seconds)
    print(f"postgresql: {postgresql}", flush=True)
    for store, found in (("sqlite", sqlite), ("postgresql", postgresql)):
        for name, value in found.items():
            figures[f"{store}_{name}"] = value
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

"""The web console's VM list: server time of the page for a project with many VMs, and
the SQL statements it runs.

    .venv/bin/python bench/web.py [--quick] [--vms N]

Makes a project with N VMs (default 1,000; --quick: 200) on SQLite and on PostgreSQL,
signs in to the console in this process (FastAPI's TestClient, so the time is the
server's), and asks for the VM list page (the first page of 100 VMs, as the console
shows it) and its live fragment many times. Prints p50 and p95 of each, and the
statements one page runs for a project with 10 VMs and with N: the same number (no
query per VM). The last line is one JSON object of every figure.

The goal (issue 16): p50 of the page at most 150 ms for 1,000 VMs.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.store import postgres_database  # noqa: E402
from nubis import hosts as host_service  # noqa: E402
from nubis import locations, vms  # noqa: E402
from nubis.auth import accounts  # noqa: E402
from nubis.config import Settings  # noqa: E402
from nubis.db import Database  # noqa: E402
from nubis.db.migrate import upgrade  # noqa: E402
from nubis.models import Image, ImageState, Membership, Project, Role  # noqa: E402
from nubis.progs.vm import VmNexus  # noqa: E402
from nubis.scheduling.weigher import Policy  # noqa: E402
from nubis.secretbox import SecretBox  # noqa: E402
from nubis.web import create_app  # noqa: E402

PASSWORD = "bench bench bench"
REPORT = {
    "name": "b1",
    "arch": "x86_64",
    "cores": 4096,
    "threads": 8192,
    "memory_bytes": 64 * 2**40,
    "hugepages": 0,
    "disk_bytes": 2**50,
    "underlay_address": "fd00:77::1",
    "acceleration": "tcg",
}
"""One host large enough for every VM of the run."""


class _Statements:
    def __init__(self) -> None:
        self.value = 0

    def count(self, *_args: object) -> None:
        self.value += 1


def _project(db: Database, name: str, user_id: Any, count: int, image: Image) -> None:
    """A project of `user_id`'s with `count` VMs, made as the API makes them."""
    with db.transaction() as session:
        project = Project(name=name)
        session.add(project)
        session.flush()
        session.add(Membership(project_id=project.id, user_id=user_id, role=Role.OWNER))
        location_id = locations.of_request(session, None).id
        project_id = project.id
    for start in range(0, count, 100):
        with db.transaction() as session:
            for number in range(start, min(count, start + 100)):
                order = vms.Order(
                    project_id=project_id,
                    name=f"vm{number}",
                    location_id=location_id,
                    image=session.merge(image),
                    cores=1,
                    memory_bytes=2**30,
                    disk_bytes=2**30,
                    ssh_keys=[],
                    user_data=None,
                    group=None,
                    networks=[],
                    ha=True,
                )
                VmNexus.assemble(session, order, Policy.SPREAD)


@contextmanager
def _console(url: str, data_dir: Path, count: int) -> Iterator[tuple[TestClient, _Statements]]:
    """A signed-in console over `url`'s store, with projects `few` (10 VMs) and `many`."""
    db = Database.connect(url, pool_size=10)
    upgrade(db)
    box = SecretBox.from_file(data_dir / "secret.key")
    with db.transaction() as session:
        location = locations.create(session, "bench1", "2001:db8:77::/48", flooding="unicast")
        token = host_service.issue_join_token(session, location.id, timedelta(hours=1))
        user = accounts.create_user(session, "bench", "bench@example.test", PASSWORD)
        image = Image(
            name="tiny",
            state=ImageState.ACTIVE,
            size_bytes=2**20,
            virtual_size_bytes=2**30,
            sha256="ab" * 32,
        )
        session.add(image)
        session.flush()
        user_id = user.id
    app = create_app(db, box, Settings(data_dir=data_dir, database_url=url))
    statements = _Statements()
    try:
        with TestClient(app, follow_redirects=False) as client:
            joined = client.post("/v1/agent/register", json={"join_token": token, "host": REPORT})
            joined.raise_for_status()
            _project(db, "few", user_id, 10, image)
            _project(db, "many", user_id, count, image)
            form = client.get("/login").text
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', form)
            assert csrf is not None
            signed = client.post(
                "/login",
                data={"csrf": csrf[1], "email": "bench@example.test", "password": PASSWORD},
            )
            assert signed.status_code == 303, signed.text
            event.listen(db.engine, "before_cursor_execute", statements.count)
            yield client, statements
    finally:
        db.dispose()


def _times(client: TestClient, path: str, rounds: int, headers: dict[str, str]) -> list[float]:
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        answer = client.get(path, headers=headers)
        times.append((time.perf_counter() - began) * 1000)
        assert answer.status_code == 200, answer.text
    return times


def _statements_of(client: TestClient, statements: _Statements, path: str) -> int:
    before = statements.value
    client.get(path).raise_for_status()
    return statements.value - before


def _measure(store: str, url: str, data_dir: Path, count: int, rounds: int) -> dict[str, Any]:
    with _console(url, data_dir, count) as (client, statements):
        page = "/projects/many/vms"
        _times(client, page, 5, {})  # warm: templates compiled, statements cached
        full = _times(client, page, rounds, {})
        live = _times(client, page, rounds, {"HX-Request": "true"})
        few = _statements_of(client, statements, "/projects/few/vms")
        many = _statements_of(client, statements, page)
        body = client.get(page).text
    shown = body.count('data-vm="')
    figures = {
        f"{store}_page_p50_ms": round(statistics.median(full), 1),
        f"{store}_page_p95_ms": round(statistics.quantiles(full, n=20)[18], 1),
        f"{store}_live_p50_ms": round(statistics.median(live), 1),
        f"{store}_statements_10_vms": few,
        f"{store}_statements_{count}_vms": many,
        f"{store}_vms_on_page": shown,
    }
    print(
        f"{store}: page p50 {figures[f'{store}_page_p50_ms']} ms, "
        f"p95 {figures[f'{store}_page_p95_ms']} ms, live fragment p50 "
        f"{figures[f'{store}_live_p50_ms']} ms ({shown} VMs of {count} on the page); "
        f"statements per page: {few} for 10 VMs, {many} for {count}"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 VMs, fewer rounds")
    parser.add_argument("--vms", type=int, default=None)
    options = parser.parse_args()
    count = options.vms or (200 if options.quick else 1000)
    rounds = 20 if options.quick else 100
    figures: dict[str, Any] = {"vms": count, "rounds": rounds}
    with tempfile.TemporaryDirectory() as scratch:
        figures |= _measure("sqlite", f"sqlite:///{scratch}/bench.db", Path(scratch), count, rounds)
    with tempfile.TemporaryDirectory() as scratch, postgres_database() as url:
        figures |= _measure("postgresql", url, Path(scratch), count, rounds)
    figures["console_ticket_to_first_frame_ms"] = None
    print("console ticket to first VNC frame: not measured, the consoles are not built yet")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

"""The agent's long poll for its desired state: it sleeps until its host's revision is
raised (by this process, or by another through PostgreSQL's NOTIFY or SQLite's
watcher), and asks the database nothing while it sleeps."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx2
from fastapi.testclient import TestClient
from sqlalchemy import event, select

from nubis import revisions
from nubis.db import Database
from nubis.models import Host
from tests.integration.api.host_agent import Agent

# Raises the revision of the host named argv[2], in a process of its own.
TOUCH = """
import sys
from sqlalchemy import select
from nubis import revisions
from nubis.db import Database
from nubis.models import Host
db = Database.connect(sys.argv[1])
with db.transaction() as session:
    host = session.scalars(select(Host).where(Host.name == sys.argv[2])).one()
    revisions.touch(session, host.id)
db.dispose()
"""


def _host_id(db: Database, name: str = "h1") -> Any:
    with db.reading() as session:
        return session.scalars(select(Host.id).where(Host.name == name)).one()


@contextmanager
def _polling(agent: Agent, wait: float) -> Iterator[list[httpx2.Response]]:
    """A long poll past the agent's revision, in a thread, until the block ends."""
    answers: list[httpx2.Response] = []
    params = {"after": agent.revision, "wait": wait}

    def poll() -> None:
        answers.append(agent.client.get("/v1/agent/desired", params=params, headers=agent.auth))

    thread = threading.Thread(target=poll)
    thread.start()
    try:
        yield answers
    finally:
        thread.join(timeout=wait + 30)


def _statements(db: Database) -> list[str]:
    """Every statement `db` runs from now on (a live list)."""
    seen: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


def test_an_idle_long_poll_asks_the_database_once_however_long_it_waits(
    agent: Agent, db: Database
) -> None:
    agent.desired(anyway=True)
    seen = _statements(db)

    with _polling(agent, wait=1.5) as answers:
        pass

    assert [answer.status_code for answer in answers] == [204]
    # One look: the host's credential and revision.
    assert len([text for text in seen if "credential_sha256" in text]) == 1
    if db.is_postgres:
        assert len(seen) == 1
    else:
        # SQLite's watcher looks a few times a second, one statement for every host.
        looks = [text for text in seen if "credential_sha256" not in text]
        assert {text.split()[0] for text in looks} <= {"BEGIN", "SELECT"}


def test_a_long_poll_answers_once_its_host_is_touched_in_this_process(
    agent: Agent, db: Database
) -> None:
    before = agent.desired(anyway=True).revision
    with _polling(agent, wait=20) as answers:
        threading.Event().wait(0.3)
        with db.transaction() as session:
            revisions.touch(session, _host_id(db))

    assert [answer.status_code for answer in answers] == [200]
    assert answers[0].json()["revision"] == before + 1


def test_a_long_poll_answers_once_another_process_touches_its_host(
    agent: Agent, db: Database, database_url: str
) -> None:
    before = agent.desired(anyway=True).revision
    with _polling(agent, wait=20) as answers:
        threading.Event().wait(0.3)
        subprocess.run([sys.executable, "-c", TOUCH, database_url, "h1"], check=True, timeout=60)

    # Not woken, it would have slept its 20 s through and answered 204.
    assert [answer.status_code for answer in answers] == [200]
    assert answers[0].json()["revision"] == before + 1


def test_another_host_s_change_does_not_answer_a_long_poll(
    agent: Agent, client: TestClient, db: Database
) -> None:
    from tests.integration.api import fleet  # noqa: PLC0415

    other = fleet.join(client, db, "h2", "fd00::2")
    agent.desired(anyway=True)
    other.desired(anyway=True)
    with _polling(agent, wait=1.5) as answers, db.transaction() as session:
        revisions.touch(session, _host_id(db, "h2"))

    assert [answer.status_code for answer in answers] == [204]

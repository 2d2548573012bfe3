"""Small progs that exercise the engine, and the tables where they leave traces.

Worker processes started by the tests import this module by name, so it must stay
importable as `tests.integration.engine.progs`.
"""

from __future__ import annotations

import os
import random
import time
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Uuid, func, insert, select

from nubis.db import Database
from nubis.engine import Prog, incr, label

metadata = MetaData()

effect = Table(
    "test_effect",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("strand_id", Uuid, nullable=False),
    Column("note", String(100), nullable=False),
)

label_run = Table(
    "test_label_run",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("strand_id", Uuid, nullable=False),
    Column("label", String(100), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started", Float, nullable=False),
    Column("ended", Float),
)

switch = Table(
    "test_switch",
    metadata,
    Column("name", String(100), primary_key=True),
)


class Steps(Prog):
    """hop, frame data carried across labels, exit."""

    @label
    def start(self) -> None:
        self.frame["seen"] = ["start"]
        self.hop("middle")

    @label
    def middle(self) -> None:
        self.frame["seen"].append("middle")
        self.hop("last")

    @label
    def last(self) -> None:
        self.frame["seen"].append("last")
        self.exit(self.frame["seen"])


class Sleeper(Prog):
    """Naps for an hour unless told to wake; counts its runs in effect rows."""

    @label
    def start(self) -> None:
        self.session.execute(insert(effect).values(strand_id=self.strand_id, note="run"))
        if self.when("wake"):
            self.decr("wake")
            self.exit("woken")
        self.nap(3600)


class Nudged(Prog):
    """Is signalled while its own label runs, then naps for an hour unless it saw it.

    On PostgreSQL the signal is committed from another connection in the middle of
    the label; SQLite has one writer at a time, so there it comes from the label's
    own transaction, which the nap must not overwrite either.
    """

    @label
    def start(self) -> None:
        self.session.execute(insert(effect).values(strand_id=self.strand_id, note="run"))
        if self.when("wake"):
            self.exit("woken")
        if not self.frame.get("nudged"):
            self.frame["nudged"] = True
            bind = self.session.get_bind()
            if bind.dialect.name == "postgresql":
                side = Database.connect(bind.engine.url)
                with side.transaction() as session:
                    incr(session, self.strand_id, "wake")
                side.dispose()
            else:
                incr(self.session, self.strand_id, "wake")
        self.nap(3600)


class Adder(Prog):
    @label
    def start(self) -> None:
        self.pop(self.frame["a"] + self.frame["b"])


class Caller(Prog):
    """push a sub-prog and continue with what it pops."""

    @label
    def start(self) -> None:
        self.frame["mine"] = "kept"
        self.push(Adder, {"a": 2, "b": 3}, then="got")

    @label
    def got(self) -> None:
        self.exit({"sum": self.retval, "mine": self.frame["mine"]})


class Child(Prog):
    @label
    def start(self) -> None:
        if self.when("go") or not self.frame.get("wait"):
            self.exit(self.frame["n"] ** 2)
        self.nap(3600)


class Parent(Prog):
    """bud children, reap them all before going on."""

    @label
    def start(self) -> None:
        self.frame["children"] = [
            str(self.bud(Child, {"n": n, "wait": self.frame.get("wait", False)}))
            for n in range(self.frame["count"])
        ]
        self.hop("wait")

    @label
    def wait(self) -> None:
        self.reap("done", nap=3600)

    @label
    def done(self) -> None:
        self.exit(sorted(self.frame["reaped"]))


class Failing(Prog):
    """Writes an effect, then fails unless the `on` switch is set."""

    @label
    def start(self) -> None:
        self.session.execute(insert(effect).values(strand_id=self.strand_id, note="tried"))
        self.frame["dirty"] = True
        on = self.session.scalar(select(func.count()).select_from(switch))
        if not on:
            raise RuntimeError("the switch is off")
        self.exit(self.frame.get("dirty"))


class Silent(Prog):
    @label
    def start(self) -> None:
        pass


class Lost(Prog):
    @label
    def start(self) -> None:
        self.hop("nowhere")


class Crashable(Prog):
    """Writes its effect, then hangs if its worker was told to, so it can be killed."""

    @label
    def start(self) -> None:
        self.session.execute(insert(effect).values(strand_id=self.strand_id, note="work"))
        marker = Path(self.frame["marker"])
        if os.environ.get("NUBIS_TEST_HANG") == "1":
            marker.write_text(str(os.getpid()))
            time.sleep(3600)
        self.hop("done")

    @label
    def done(self) -> None:
        self.exit("finished")


class Overrun(Prog):
    """Runs longer than any lease the tests give."""

    @label
    def start(self) -> None:
        Path(self.frame["marker"]).write_text(str(os.getpid()))
        time.sleep(self.frame["seconds"])
        self.exit("too late")


@cache
def _side_engine(url: str) -> sa.Engine:
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", pool_size=1)


class Relay(Prog):
    """Four labels that each record when they ran, from a connection of their own, so
    that even a run whose transaction is rolled back leaves its trace (PostgreSQL)."""

    def _record(self, name: str, then: str | None) -> None:
        url = self.session.get_bind().engine.url.render_as_string(hide_password=False)
        side = _side_engine(url)
        with side.connect() as connection:
            run = connection.execute(
                insert(label_run)
                .values(strand_id=self.strand_id, label=name, pid=os.getpid(), started=time.time())
                .returning(label_run.c.id)
            ).scalar_one()
            time.sleep(random.uniform(0, 0.002))
            connection.execute(
                label_run.update().where(label_run.c.id == run).values(ended=time.time())
            )
        if then is None:
            self.exit(name)
        self.hop(then)

    @label
    def a(self) -> None:
        self._record("a", "b")

    @label
    def b(self) -> None:
        self._record("b", "c")

    @label
    def c(self) -> None:
        self._record("c", "d")

    @label
    def d(self) -> None:
        self._record("d", None)

    start_label = "a"

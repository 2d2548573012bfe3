"""A fleet of hosts played by the test, for the failure tests: each host's agent takes
its desired state, runs what it names and reports it, with what it sees of its peers;
a host "dies" by going silent while the others report it silent too."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from nubis.choices import StrandStatus
from nubis.clock import now
from nubis.db import Database
from nubis.engine.dispatcher import Dispatcher
from nubis.ids import Kind, format_id
from nubis.models import Host, HostEvent, Plane, VmEvent
from nubis.models.engine import Strand
from nubis.progs.host import HostMonitor
from nubis.protocol import Desired
from tests.integration.api import fleet
from tests.integration.api.host_agent import Agent
from tests.integration.engine.helpers import drain

DEAD = 25.0
"""Seconds of silence past the default dead window (20 s)."""


@dataclass
class Fleet:
    client: TestClient
    db: Database
    dispatcher: Dispatcher
    agents: dict[str, Agent] = field(default_factory=dict)
    runs: dict[str, dict[str, str]] = field(default_factory=dict)
    """What each host runs: VM id -> state, as its agent reports it."""

    def join(self, *names: str) -> None:
        for name in names:
            underlay = f"fd00::{len(self.agents) + 1:x}"
            self.agents[name] = fleet.join(self.client, self.db, name, underlay)
        self.settle()

    def host(self, name: str) -> Host:
        with self.db.reading() as session:
            return session.scalars(select(Host).where(Host.name == name)).one()

    def public(self, name: str) -> str:
        return format_id(Kind.HOST, self.host(name).id)

    def desired(self, name: str) -> Desired:
        return self.agents[name].desired(anyway=True)

    def report(self, name: str, peers: dict[str, float] | None = None) -> None:
        self.agents[name].send(self.runs.get(name, {}), peers=peers)

    def run(self, *names: str) -> None:
        """Each host's agent converges to its desired state and says so: every VM runs
        (or stays stopped)."""
        for name in names or tuple(self.agents):
            desired = self.desired(name)
            self.runs[name] = {vm.id: "running" if vm.running else "stopped" for vm in desired.vms}
            self.report(name)
        self.settle()

    def settle(self) -> None:
        drain(self.dispatcher)

    def hearing_for(self, seconds: float) -> None:
        """The control plane has been hearing from hosts, without a gap, for `seconds`."""
        with self.db.transaction() as session:
            session.execute(
                update(Plane).values(
                    receiving_since=now() - timedelta(seconds=seconds), last_status_at=now()
                )
            )

    def silent(self, name: str, seconds: float) -> None:
        """The host's last heartbeat was `seconds` ago."""
        with self.db.transaction() as session:
            session.execute(
                update(Host)
                .where(Host.name == name)
                .values(last_heartbeat_at=now() - timedelta(seconds=seconds))
            )

    def look(self) -> None:
        """Every host monitor looks now; the engine runs until nothing is due."""
        with self.db.transaction() as session:
            session.execute(
                update(Strand)
                .where(Strand.prog == HostMonitor.name(), Strand.status == StrandStatus.ACTIVE)
                .values(schedule=now())
            )
        self.settle()

    def watchers_report(self, name: str, silence: float, *, by: tuple[str, ...] = ()) -> None:
        """The hosts `by` (default: all others) report `name` silent for `silence` s."""
        target = self.public(name)
        for other in by or tuple(n for n in self.agents if n != name):
            self.report(other, peers={target: silence})

    def dies(self, name: str) -> None:
        """`name` loses power: no heartbeat since DEAD s ago, every other host reports it
        silent as long, and the control plane has been hearing for a while."""
        self.watchers_report(name, DEAD)
        self.silent(name, DEAD)
        self.hearing_for(60)
        self.look()

    def health(self, name: str) -> str:
        return self.host(name).health

    def events(self, name: str, kind: str | None = None) -> list[str]:
        host_id = self.host(name).id
        with self.db.reading() as session:
            query = select(HostEvent).where(HostEvent.host_id == host_id)
            if kind is not None:
                query = query.where(HostEvent.kind == kind)
            return [f"{e.kind}: {e.detail}" for e in session.scalars(query.order_by(HostEvent.id))]


def vm_events(db: Database, vm_id: Any) -> list[str]:
    with db.reading() as session:
        query = select(VmEvent).where(VmEvent.vm_id == vm_id).order_by(VmEvent.id)
        return [e.kind for e in session.scalars(query)]

"""The host monitor: one strand per host that turns missed heartbeats into health.

A host is `online` while heartbeats come, `unreachable` after the unreachable window
without one, `dead` after the dead window. The monitor naps until the next moment
its host could change state; a heartbeat to a host that is not online wakes it.
"""

from __future__ import annotations

from uuid import UUID

from nubis.clock import now
from nubis.engine.prog import Prog, label
from nubis.hosts import record
from nubis.models import Health, Host

DEAD_NAP_SECONDS = 3600.0
"""A dead host's monitor waits for a heartbeat (which wakes it) or the removal."""


def health_after(silence: float, unreachable: float, dead: float) -> Health:
    if silence >= dead:
        return Health.DEAD
    if silence >= unreachable:
        return Health.UNREACHABLE
    return Health.ONLINE


class HostMonitor(Prog):
    start_label = "watch"

    @label
    def watch(self) -> None:
        host = self.session.get(Host, UUID(self.frame["host"]), with_for_update=True)
        if host is None or self.when("remove"):
            self.exit("removed")
        unreachable, dead = float(self.frame["unreachable"]), float(self.frame["dead"])
        silence = (now() - host.last_heartbeat_at).total_seconds()
        health = health_after(silence, unreachable, dead)
        if health != host.health:
            record(
                self.session,
                host.id,
                "health",
                f"{host.health} -> {health}: last heartbeat {silence:.1f} s ago",
            )
            host.health = health
        self.decr("heartbeat")
        if health is Health.ONLINE:
            self.nap(max(unreachable - silence, 0.2))
        if health is Health.UNREACHABLE:
            self.nap(max(dead - silence, 0.2))
        self.nap(DEAD_NAP_SECONDS)

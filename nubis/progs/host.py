"""The host monitor: one strand per host that turns missed heartbeats into health.

A host is `online` while heartbeats come and `unreachable` after the unreachable
window without one. It is `dead` only when death is confirmed, not guessed: no
heartbeat for the dead window, AND its watchers (`nubis/peers.py`) confirm it silent
for about as long, AND the control plane has itself been hearing from hosts for a
whole dead window (so its own outage is never taken for the hosts'). Without that it
stays `unreachable`, with an alert in its event log that says why. In the transaction
that marks it dead its VMs are taken off it (`nubis/evacuation.py`). A dead host that
heartbeats again is `online`: an empty host, rejoined.

The monitor naps until the next moment its host could change state; a heartbeat to a
host that is not online wakes it.
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy.orm import Session

from nubis import hosts, peers
from nubis.clock import now
from nubis.config import FENCE_ACT_SECONDS, Settings
from nubis.engine import strand
from nubis.engine.prog import Prog, label
from nubis.evacuation import take_off
from nubis.hosts import record
from nubis.models import Health, Host
from nubis.protocol import HostReport
from nubis.scheduling import waiting

DEAD_NAP_SECONDS = 3600.0
"""A dead host's monitor waits for a heartbeat (which wakes it) or the removal."""
CONFIRM_NAP_SECONDS = 2.0
"""How often a host silent for the dead window but not confirmed dead is looked at
again: about as often as its watchers report."""


def health_after(silence: float, unreachable: float, dead: float) -> Health:
    """The health that heartbeats alone suggest; `dead` still needs confirming."""
    if silence >= dead:
        return Health.DEAD
    if silence >= unreachable:
        return Health.UNREACHABLE
    return Health.ONLINE


class HostMonitor(Prog):
    start_label = "watch"

    @classmethod
    def assemble(
        cls, session: Session, join_token: str, report: HostReport, settings: Settings
    ) -> tuple[Host, str]:
        """A host joins: it is made (`hosts.register`) and watched from now on; the host
        and its credential (shown once)."""
        host, credential = hosts.register(session, join_token, report)
        frame = {
            "host": str(host.id),
            "unreachable": settings.host_unreachable_seconds,
            "fence": settings.host_fence_seconds,
            "dead": settings.host_dead_seconds,
        }
        host.monitor_id = strand.start(session, cls, frame)
        return host, credential

    @label
    def watch(self) -> None:
        host = self.session.get(Host, UUID(self.frame["host"]), with_for_update=True)
        if host is None or self.when("remove"):
            self.exit("removed")
        unreachable, dead = float(self.frame["unreachable"]), float(self.frame["dead"])
        silence = (now() - host.last_heartbeat_at).total_seconds()
        health = health_after(silence, unreachable, dead)
        why = f"last heartbeat {silence:.1f} s ago"
        if health is Health.DEAD and host.health != Health.DEAD:
            held, words = self._confirm(host, unreachable, dead)
            if held is None:
                why += f"; {words}"
            else:
                health = Health.UNREACHABLE
                if self.frame.get("held") != held:  # each reason once, not at every look
                    record(self.session, host.id, "alert", f"{why}, not dead: {words}")
                self.frame["held"] = held
        if health != Health.UNREACHABLE:
            self.frame.pop("held", None)
        if health != host.health:
            self._change(host, Health(host.health), health, why)
        self.decr("heartbeat")
        if health is Health.ONLINE:
            self.nap(max(unreachable - silence, 0.2))
        if health is Health.UNREACHABLE:
            self.nap(dead - silence if silence < dead else CONFIRM_NAP_SECONDS)
        self.nap(DEAD_NAP_SECONDS)

    def _confirm(self, host: Host, unreachable: float, dead: float) -> tuple[str | None, str]:
        """Whether a host silent for the dead window is dead: None and the evidence, or
        a short key of why not and the words."""
        hearing = peers.hearing(self.session, gap=unreachable)
        if hearing < dead:
            return "plane", (
                f"the control plane has heard from hosts for only {hearing:.0f} s "
                f"(it waits {dead:g} s after its own outage)"
            )
        fence = float(self.frame.get("fence", dead - unreachable - FENCE_ACT_SECONDS))
        votes = peers.votes(
            self.session, host, silence=fence + unreachable + FENCE_ACT_SECONDS, fresh=unreachable
        )
        if votes.watchers == 0:
            return "alone", "no host watches it (it is alone in its location)"
        if not votes.confirm:
            key = f"seen {votes.silent}/{votes.seeing}/{votes.watchers}"
            return key, f"{votes}; it takes {votes.needed} and a majority of those reporting"
        return None, str(votes)

    def _change(self, host: Host, was: Health, health: Health, why: str) -> None:
        record(self.session, host.id, "health", f"{was} -> {health}: {why}")
        host.health = health
        if health is Health.DEAD:
            moved = take_off(self.session, host)
            record(self.session, host.id, "evacuate", f"{moved} VM(s) taken off the dead host")
        elif was is Health.DEAD:
            # Its desired state names no VM: the agent stopped and removed what it ran.
            record(self.session, host.id, "rejoined", "back from the dead as an empty host")
            waiting.wake(self.session, host.location_id)

"""Who watches whom, what the watchers report, and when they confirm a host's death.

The hosts of a location form a ring in the order of their ids (the order they
joined); each host watches the PEERS_EACH_SIDE hosts before it and after it. The
relation is symmetric: the hosts a host watches are exactly the hosts that watch it.
A watcher reports a host silent only when nothing at all came from it, and a host
counts a peer as reached only by answers to its own questions, which that peer heard:
when enough watchers report a host silent, that host has not reached them either, so
it cannot reach a majority of its own peers, and fences itself (nubis/agent/peers.py).
That is what lets the control plane move its VMs (see docs/hosts.md, Failure).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from sqlalchemy import case, literal, or_, select, update
from sqlalchemy.orm import Session

from nubis.clock import now
from nubis.ids import Kind, format_id
from nubis.models import Health, Host, Plane
from nubis.protocol import Peer, Status

PEERS_EACH_SIDE = 2
"""Each host watches (and is watched by) up to twice this many hosts."""
PLANE_ROW = 1
HEARD_EVERY_SECONDS = 1.0
"""The plane's row is written at most this often, however many hosts report."""


def ring(ordered: Sequence[UUID]) -> dict[UUID, tuple[UUID, ...]]:
    """Each host's neighbours in the ring of `ordered` hosts: the nearest first, after
    then before; every other host where the ring is small."""
    count = len(ordered)
    found: dict[UUID, tuple[UUID, ...]] = {}
    for index, host in enumerate(ordered):
        near: list[UUID] = []
        for distance in range(1, PEERS_EACH_SIDE + 1):
            for other in (ordered[(index + distance) % count], ordered[(index - distance) % count]):
                if other != host and other not in near:
                    near.append(other)
        found[host] = tuple(near)
    return found


def location_ring(session: Session, location_id: UUID) -> dict[UUID, tuple[UUID, ...]]:
    """The ring of a location's hosts (removed hosts are gone from the table)."""
    ordered = session.scalars(
        select(Host.id).where(Host.location_id == location_id).order_by(Host.id)
    ).all()
    return ring(ordered)


def changed(
    before: Mapping[UUID, tuple[UUID, ...]], after: Mapping[UUID, tuple[UUID, ...]]
) -> list[UUID]:
    """The hosts (still there) whose peers differ between two rings, in one order."""
    return sorted(
        host for host, near in after.items() if host in before and set(before[host]) != set(near)
    )


def peers_of(session: Session, host: Host) -> list[Peer]:
    """The peers `host` watches, with their underlay addresses: one query."""
    rows = session.execute(
        select(Host.id, Host.underlay_address)
        .where(Host.location_id == host.location_id)
        .order_by(Host.id)
    ).all()
    address = {key: underlay for key, underlay in rows}
    near = ring([key for key, _ in rows]).get(host.id, ())
    return [Peer(host=format_id(Kind.HOST, other), address=address[other]) for other in near]


def take_in(host: Host, status: Status) -> bool:
    """Keep what the agent saw of its peers on the host row (no query of its own);
    whether the agent says it fenced itself and did not say so before."""
    host.peer_silence = {seen.host: seen.silent_seconds for seen in status.peers}
    host.peers_reported_at = now()
    newly_fenced = status.fenced and not host.fenced
    host.fenced = status.fenced
    return newly_fenced


@dataclass(frozen=True)
class Votes:
    """What the watchers of a host say of it."""

    watchers: int
    """How many hosts watch it (as many as it watches)."""
    silent: int
    """Watchers with a fresh report that it has been silent for the window."""
    seeing: int
    """Watchers with a fresh report that it answered within the window."""

    @property
    def needed(self) -> int:
        """Silent watchers that prove the host has fenced itself: a majority of them.
        It then reaches fewer than half of its peers (the same hosts), and an agent
        that does fences (`nubis/agent/fence.py`, `quorate`)."""
        return self.watchers // 2 + 1

    @property
    def confirm(self) -> bool:
        """Enough silent watchers, and more than the ones that still see it."""
        return self.silent >= self.needed and self.silent > self.seeing

    def __str__(self) -> str:
        sees = "sees" if self.seeing == 1 else "see"
        return (
            f"{self.silent} of {self.watchers} watchers report it silent, {self.seeing} {sees} it"
        )


def votes(session: Session, host: Host, silence: float, fresh: float) -> Votes:
    """Count the reports of `host` by its watchers: only those of watchers that are not
    dead and reported within `fresh` seconds; silent means for `silence` seconds or
    more when the report was made (never extrapolated: it may have come back since)."""
    near = location_ring(session, host.location_id).get(host.id, ())
    if not near:
        return Votes(0, 0, 0)
    me = format_id(Kind.HOST, host.id)
    oldest = now() - timedelta(seconds=fresh)
    silent = seeing = 0
    for health, reported_at, seen in session.execute(
        select(Host.health, Host.peers_reported_at, Host.peer_silence).where(Host.id.in_(near))
    ):
        if health == Health.DEAD or reported_at is None or reported_at < oldest:
            continue
        quiet = seen.get(me)
        if quiet is None:
            continue  # it does not watch this host (yet)
        if float(quiet) >= silence:
            silent += 1
        else:
            seeing += 1
    return Votes(len(near), silent, seeing)


def heard(session: Session, gap: float) -> None:
    """A host reported: note it on the plane's row, starting a new hearing period if
    no host had reported for `gap` seconds. One UPDATE, which writes (and locks) the
    row at most once a second."""
    at = now()
    quiet = or_(Plane.last_status_at.is_(None), Plane.last_status_at < at - timedelta(seconds=gap))
    session.execute(
        update(Plane)
        .where(
            Plane.id == PLANE_ROW,
            or_(
                Plane.last_status_at.is_(None),
                Plane.last_status_at < at - timedelta(seconds=HEARD_EVERY_SECONDS),
            ),
        )
        .values(
            receiving_since=case(
                (quiet, literal(at, Plane.receiving_since.type)), else_=Plane.receiving_since
            ),
            last_status_at=at,
        )
    )


def hearing(session: Session, gap: float) -> float:
    """How long the control plane has been hearing from hosts without a gap of `gap`
    seconds: 0 if it hears nothing now."""
    row = session.get(Plane, PLANE_ROW)
    if row is None or row.receiving_since is None or row.last_status_at is None:
        return 0.0
    at = now()
    if (at - row.last_status_at).total_seconds() > gap + HEARD_EVERY_SECONDS:
        return 0.0
    return max(0.0, (at - row.receiving_since).total_seconds())

"""Who watches whom (a symmetric ring per location), and when watchers confirm a death."""

from __future__ import annotations

from uuid import UUID

import pytest

from nubis.agent.fence import quorate
from nubis.ids import new_id
from nubis.peers import PEERS_EACH_SIDE, Votes, changed, ring


def _hosts(count: int) -> list[UUID]:
    return sorted(new_id() for _ in range(count))


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 6, 9])
def test_every_host_is_watched_by_exactly_the_hosts_it_watches(count: int) -> None:
    hosts = _hosts(count)
    near = ring(hosts)
    for host in hosts:
        assert host not in near[host]
        assert len(near[host]) == min(count - 1, 2 * PEERS_EACH_SIDE)
        for other in near[host]:
            assert host in near[other]


def test_a_large_ring_watches_the_two_hosts_on_each_side() -> None:
    hosts = _hosts(9)
    assert set(ring(hosts)[hosts[0]]) == {hosts[1], hosts[2], hosts[8], hosts[7]}
    assert ring(hosts)[hosts[4]] == (hosts[5], hosts[3], hosts[6], hosts[2])


def test_a_host_alone_watches_nobody() -> None:
    (host,) = _hosts(1)
    assert ring([host]) == {host: ()}


def test_a_join_changes_the_peers_of_only_the_hosts_next_to_it() -> None:
    hosts = _hosts(9)
    before, after = ring(hosts[:8]), ring(hosts)
    assert set(changed(before, after)) == {hosts[0], hosts[1], hosts[6], hosts[7]}


@pytest.mark.parametrize(
    ("votes", "confirmed"),
    [
        (Votes(watchers=4, silent=3, seeing=1), True),
        (Votes(watchers=4, silent=2, seeing=0), False),
        (Votes(watchers=4, silent=2, seeing=2), False),
        (Votes(watchers=3, silent=2, seeing=1), True),
        (Votes(watchers=2, silent=1, seeing=0), False),
        (Votes(watchers=2, silent=2, seeing=0), True),
        (Votes(watchers=1, silent=1, seeing=0), True),
        (Votes(watchers=1, silent=0, seeing=0), False),
        (Votes(watchers=0, silent=0, seeing=0), False),
    ],
)
def test_death_takes_enough_silent_watchers_and_more_than_see_it(
    votes: Votes, confirmed: bool
) -> None:
    assert votes.confirm is confirmed


@pytest.mark.parametrize("watchers", range(1, 2 * PEERS_EACH_SIDE + 1))
def test_a_host_its_watchers_confirm_dead_is_one_its_agent_fences(watchers: int) -> None:
    # The watchers are its peers; the silent ones are peers it cannot reach either.
    reachable = watchers - Votes(watchers, 0, 0).needed
    assert not quorate(reachable, watchers)
    assert quorate(reachable + 1, watchers)  # and no more is needed than that

"""The allocator's accounting under random sequences of reservations, give-backs and
crashes (a transaction that raises after `place()` or `release()`, so it rolls back):
after every step each host's counters are the sum of its allocations, stay within its
capacity, and hold exactly what the VMs placed on it asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy.orm import Session

from nubis.db import Database
from nubis.errors import NoCapacity
from nubis.models import AllocationState
from nubis.scheduling.allocator import candidates, differences, place, release
from nubis.scheduling.stages import GIB, Request, sift
from nubis.scheduling.weigher import Policy, order
from tests.integration.scheduling.fleet import (
    Usage,
    add_host,
    add_location,
    allocations,
    clear,
    over_capacity,
    usages,
)

HOSTS: dict[str, dict[str, object]] = {
    # 8 vCPUs and 24 GiB by overcommit.
    "over": {"cores": 4, "cpu_ratio": 2.0, "memory_bytes": 16 * GIB, "memory_ratio": 1.5,
             "disk_bytes": 100 * GIB},
    # VM memory from 12 huge pages only.
    "paged": {"cores": 4, "memory_bytes": 64 * GIB, "hugepages": 12, "disk_bytes": 60 * GIB},
    "tight": {"cores": 2, "memory_bytes": 8 * GIB, "disk_bytes": 40 * GIB},
    # Never takes a VM.
    "drained": {"allocation_state": AllocationState.DRAINING},
}  # fmt: skip


@dataclass(frozen=True)
class Shape:
    cores: int
    memory_bytes: int
    disk_bytes: int
    group: str | None
    policy: Policy


shapes = st.builds(
    Shape,
    cores=st.integers(1, 4),
    memory_bytes=st.sampled_from([GIB // 2, GIB, 3 * GIB // 2, 2 * GIB, 4 * GIB, 8 * GIB]),
    disk_bytes=st.sampled_from([0, 10 * GIB, 20 * GIB, 30 * GIB]),
    group=st.sampled_from([None, None, "web"]),
    policy=st.sampled_from(list(Policy)),
)
crashes = st.sampled_from([False, False, True])


class Crash(Exception):
    """Raised inside a transaction to roll it back, like a process dying mid-label."""


@dataclass(frozen=True)
class Held:
    host: str
    usage: Usage
    group: str | None


class Accounting(RuleBasedStateMachine):
    """A model of what each consumer holds, checked against the store after each step."""

    placed = Bundle("placed")
    """Consumers placed at some point (and perhaps given back since)."""

    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db = db
        self.held: dict[str, Held] = {}
        self.consumers = 0
        with db.transaction() as session:
            clear(session)
            location = add_location(session)
            self.location_id = location.id
            self.names: dict[UUID, str] = {
                add_host(session, location, name, **fields).id: name
                for name, fields in HOSTS.items()
            }

    def _unchanged_by(self, step: Callable[[Session], object]) -> None:
        """Run `step` in a transaction that then crashes; nothing it did may remain."""
        before = (usages(self.db), allocations(self.db))
        with pytest.raises((Crash, NoCapacity)), self.db.transaction() as session:
            step(session)
            raise Crash
        assert (usages(self.db), allocations(self.db)) == before

    @rule(target=placed, shape=shapes, crash=crashes)
    def reserve(self, shape: Shape, crash: bool) -> MultipleResults[str]:
        self.consumers += 1
        return self._reserve(f"vm-{self.consumers}", shape, crash)

    @rule(target=placed, consumer=placed, shape=shapes, crash=crashes)
    def reserve_again(self, consumer: str, shape: Shape, crash: bool) -> MultipleResults[str]:
        """A retried label (its allocation comes back), or a VM placed again after a give-back."""
        return self._reserve(consumer, shape, crash)

    def _reserve(self, consumer: str, shape: Shape, crash: bool) -> MultipleResults[str]:
        request = Request(
            location_id=self.location_id,
            cores=shape.cores,
            memory_bytes=shape.memory_bytes,
            disk_bytes=shape.disk_bytes,
            group=shape.group,
        )
        if crash:
            self._unchanged_by(lambda session: place(session, request, consumer, shape.policy))
            return multiple()
        before = usages(self.db)
        try:
            with self.db.transaction() as session:
                kept, _ = sift(candidates(session, request), request)
                best = order(kept, shape.policy)
                allocation = place(session, request, consumer, shape.policy)
        except NoCapacity:
            event("reserve: refused")
            assert consumer not in self.held
            assert not best, "refused while a host fits"
            assert usages(self.db) == before
            return multiple()
        host = self.names[allocation.host_id]
        if consumer in self.held:  # placed already: place() gives its allocation back
            event("reserve: placed already")
            assert host == self.held[consumer].host
            assert usages(self.db) == before
            return multiple()
        assert best and allocation.host_id == best[0].id, "not the host the weigher prefers"
        event(f"reserve: placed on {host}" + (" in a group" if request.group else ""))
        paged = bool(HOSTS[host].get("hugepages"))
        self.held[consumer] = Held(
            host,
            Usage(
                cores=request.cores,
                memory_bytes=0 if paged else request.memory_bytes,
                hugepages=request.hugepages if paged else 0,
                disk_bytes=request.disk_bytes,
            ),
            request.group,
        )
        return multiple(consumer)

    @rule(consumer=placed, crash=crashes)
    def give_back(self, consumer: str, crash: bool) -> None:
        if crash:
            self._unchanged_by(lambda session: release(session, consumer))
            return
        with self.db.transaction() as session:
            freed = release(session, consumer)
        assert freed is (consumer in self.held)
        event(f"give back: {'freed' if freed else 'nothing held'}")
        self.held.pop(consumer, None)

    @invariant()
    def counters_are_the_sum_of_allocations(self) -> None:
        with self.db.reading() as session:
            assert differences(session) == []

    @invariant()
    def counters_stay_within_capacity(self) -> None:
        assert over_capacity(self.db) == []

    @invariant()
    def hosts_hold_exactly_what_their_vms_asked_for(self) -> None:
        expected = {name: Usage() for name in HOSTS}
        for held in self.held.values():
            expected[held.host] += held.usage
        assert usages(self.db) == expected
        assert allocations(self.db) == {consumer: held.host for consumer, held in self.held.items()}

    @invariant()
    def group_members_never_share_a_host(self) -> None:
        members = [held.host for held in self.held.values() if held.group is not None]
        assert len(members) == len(set(members))


def test_random_reserve_release_and_crash_sequences_keep_every_counter_exact(
    db: Database,
) -> None:
    class OnThisStore(Accounting):
        def __init__(self) -> None:
            super().__init__(db)

    run_state_machine_as_test(
        OnThisStore,
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )

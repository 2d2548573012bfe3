"""Placement on a real store: the SQL face of every stage and of the weigher means what
the pure face means, reservations fill hosts exactly to their capacity, a refusal says
why, and capacity comes back exactly once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from nubis.db import Database
from nubis.errors import NoCapacity
from nubis.ids import new_id
from nubis.models import Allocation, AllocationState, Health, Host, Location
from nubis.scheduling.allocator import (
    Difference,
    Placement,
    candidates,
    differences,
    place,
    release,
)
from nubis.scheduling.stages import GIB, STAGES, Request, offered_cores, parameters, sift
from nubis.scheduling.weigher import Policy, order, order_clause
from tests.integration.scheduling.fleet import (
    LOCATION,
    Usage,
    add_host,
    add_location,
    allocations,
    as_candidate,
    clear,
    over_capacity,
    usage,
)

# The pure and the SQL face of every stage, on random hosts and requests.

HALF_GIB = GIB // 2
TEN_GIB = 10 * GIB
RATIOS = [0.5, 0.75, 1.0, 1.1, 1.5, 2.0, 4.0]
GROUPS = ["web", "db"]


@dataclass(frozen=True)
class HostSpec:
    location: int
    arch: str
    allocation_state: str
    health: str
    cores: int
    cpu_ratio: float
    used_cores: int
    memory_bytes: int
    memory_ratio: float
    used_memory_bytes: int
    hugepages: int
    used_hugepages: int
    disk_bytes: int
    used_disk_bytes: int
    groups: frozenset[str] = field(default_factory=frozenset)


@st.composite
def host_specs(draw: st.DrawFn) -> HostSpec:
    """A host near the edges: small sizes in half-GiB and 10 GiB steps, odd ratios,
    counters anywhere up to (and often at) its capacity."""
    cores = draw(st.integers(1, 8))
    cpu_ratio = draw(st.sampled_from(RATIOS))
    memory_bytes = draw(st.integers(1, 16)) * HALF_GIB + draw(st.sampled_from([0, 1]))
    memory_ratio = draw(st.sampled_from(RATIOS))
    memory_limit = math.floor(memory_bytes * memory_ratio)
    used_memory = draw(
        st.one_of(
            st.just(memory_limit), st.integers(0, memory_limit // HALF_GIB).map(HALF_GIB.__mul__)
        )
    )
    hugepages = draw(st.sampled_from([0, 0, 0, 1, 2, 4, 8, 16]))
    disk_bytes = draw(st.integers(0, 8)) * TEN_GIB
    return HostSpec(
        location=draw(st.integers(0, 1)),
        arch=draw(st.sampled_from(["x86_64", "aarch64"])),
        allocation_state=draw(st.sampled_from(list(AllocationState))),
        health=draw(st.sampled_from(list(Health))),
        cores=cores,
        cpu_ratio=cpu_ratio,
        used_cores=draw(st.integers(0, math.floor(cores * cpu_ratio))),
        memory_bytes=memory_bytes,
        memory_ratio=memory_ratio,
        used_memory_bytes=used_memory,
        hugepages=hugepages,
        used_hugepages=draw(st.integers(0, hugepages)),
        disk_bytes=disk_bytes,
        used_disk_bytes=draw(st.integers(0, disk_bytes // TEN_GIB)) * TEN_GIB,
        groups=draw(st.frozensets(st.sampled_from(GROUPS))),
    )


@dataclass(frozen=True)
class Ask:
    """A request whose location and pinned host are indexes, resolved once rows exist."""

    location: int
    cores: int
    memory_bytes: int
    disk_bytes: int
    arch: str
    group: str | None
    pin: int | None
    """An index into the hosts, -1 for a host that does not exist, or None."""

    def request(self, locations: list[UUID], hosts: list[UUID]) -> Request:
        pin = (
            None if self.pin is None else new_id() if self.pin < 0 else hosts[self.pin % len(hosts)]
        )
        return Request(
            location_id=locations[self.location],
            cores=self.cores,
            memory_bytes=self.memory_bytes,
            disk_bytes=self.disk_bytes,
            arch=self.arch,
            group=self.group,
            host_id=pin,
        )


asks = st.builds(
    Ask,
    location=st.integers(0, 1),
    cores=st.integers(1, 9),
    memory_bytes=st.builds(
        lambda halves, nudge: max(1, halves * HALF_GIB + nudge),
        st.integers(0, 18),
        st.sampled_from([0, 0, 1, -1]),
    ),
    disk_bytes=st.builds(
        lambda tens, nudge: max(0, tens * TEN_GIB + nudge),
        st.integers(0, 9),
        st.sampled_from([0, 0, 1, -1]),
    ),
    arch=st.sampled_from(["x86_64", "x86_64", "aarch64"]),
    group=st.sampled_from([None, None, *GROUPS, "cache"]),
    pin=st.one_of(st.none(), st.none(), st.integers(-1, 7)),
)

AGREEMENT = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass(frozen=True)
class Fleet:
    locations: list[UUID]
    hosts: list[UUID]


def insert(db: Database, specs: list[HostSpec]) -> Fleet:
    """Replace whatever the store holds with hosts as `specs` say, each holding a member
    of its groups."""
    with db.transaction() as session:
        clear(session)
        locations = [add_location(session, LOCATION).id, add_location(session, "ams1").id]
        hosts = []
        for number, spec in enumerate(specs):
            fields = {
                name: getattr(spec, name)
                for name in HostSpec.__dataclass_fields__
                if name not in {"location", "groups"}
            }
            host = add_host(session, locations[spec.location], f"host-{number}", **fields)
            hosts.append(host.id)
            for group in sorted(spec.groups):
                session.add(
                    Allocation(
                        host_id=host.id,
                        consumer=f"host-{number}-{group}",
                        cores=1,
                        memory_bytes=0,
                        hugepages=0,
                        disk_bytes=0,
                        affinity_group=group,
                    )
                )
    return Fleet(locations, hosts)


def stored(fleet: Fleet, db: Database) -> list[Host]:
    """The hosts as the store gives them back."""
    with db.reading() as session:
        return [session.get_one(Host, host_id) for host_id in fleet.hosts]


@AGREEMENT
@given(
    specs=st.lists(host_specs(), min_size=1, max_size=8),
    requests=st.lists(asks, min_size=1, max_size=4),
)
def test_every_stage_s_sql_keeps_the_hosts_its_pure_function_keeps(
    db: Database, specs: list[HostSpec], requests: list[Ask]
) -> None:
    fleet = insert(db, specs)
    hosts = [
        as_candidate(row, spec.groups) for row, spec in zip(stored(fleet, db), specs, strict=True)
    ]

    with db.reading() as session:
        for ask in requests:
            request = ask.request(fleet.locations, fleet.hosts)
            for stage in STAGES:
                query = select(Host.id).where(stage.clause(request.shape))
                in_sql = set(session.scalars(query, parameters(request)))
                in_python = {host.id for host in hosts if stage.keeps(host, request)}
                assert in_sql == in_python, (stage.name, request)
            every = select(Host.id).where(*(stage.clause(request.shape) for stage in STAGES))
            kept, _ = sift(hosts, request)
            assert set(session.scalars(every, parameters(request))) == {h.id for h in kept}


@AGREEMENT
@given(specs=st.lists(host_specs(), min_size=1, max_size=8), policy=st.sampled_from(list(Policy)))
def test_the_weigher_s_sql_orders_hosts_as_its_pure_function_does(
    db: Database, specs: list[HostSpec], policy: Policy
) -> None:
    fleet = insert(db, specs)
    hosts = [as_candidate(row) for row in stored(fleet, db)]

    with db.reading() as session:
        in_sql = list(session.scalars(select(Host.id).order_by(*order_clause(policy))))

    assert in_sql == [host.id for host in order(hosts, policy)]


@AGREEMENT
@given(specs=st.lists(host_specs(), min_size=1, max_size=6), ask=asks)
def test_candidates_are_the_location_s_hosts_and_the_pinned_one_as_stored(
    db: Database, specs: list[HostSpec], ask: Ask
) -> None:
    fleet = insert(db, specs)
    request = ask.request(fleet.locations, fleet.hosts)
    held = {request.group} if request.group else set()
    expected = [
        as_candidate(row, spec.groups & held)
        for row, spec in zip(stored(fleet, db), specs, strict=True)
        if row.location_id == request.location_id or row.id == request.host_id
    ]

    with db.reading() as session:
        seen = candidates(session, request)

    assert sorted(seen, key=lambda h: h.id) == sorted(expected, key=lambda h: h.id)


# Reserving and giving back.


@pytest.fixture
def location(db: Database) -> Location:
    with db.transaction() as session:
        return add_location(session)


def new_host(db: Database, location: Location, name: str, **fields: object) -> UUID:
    with db.transaction() as session:
        return add_host(session, location, name, **fields).id


def vm(
    location: Location,
    cores: int = 1,
    memory_gib: float = 8,
    disk_gib: int = 0,
    *,
    group: str | None = None,
    host_id: UUID | None = None,
) -> Request:
    return Request(
        location_id=location.id,
        cores=cores,
        memory_bytes=int(memory_gib * GIB),
        disk_bytes=disk_gib * GIB,
        group=group,
        host_id=host_id,
    )


def place_one(
    db: Database, request: Request, consumer: str, policy: Policy = Policy.SPREAD
) -> Placement:
    with db.transaction() as session:
        return place(session, request, consumer, policy)


def refusal(db: Database, request: Request, consumer: str = "refused") -> str:
    with pytest.raises(NoCapacity) as refused, db.transaction() as session:
        place(session, request, consumer)
    return refused.value.detail


def release_one(db: Database, consumer: str) -> bool:
    with db.transaction() as session:
        return release(session, consumer)


def counter_differences(db: Database) -> list[Difference]:
    with db.reading() as session:
        return differences(session)


def fill(db: Database, request: Request, prefix: str = "vm") -> int:
    """Place `request` until no host has room; how many fit."""
    placed = 0
    while True:
        try:
            place_one(db, request, f"{prefix}-{placed}")
        except NoCapacity:
            return placed
        placed += 1


class Crash(Exception):
    """Raised inside a transaction to roll it back, like a process dying mid-label."""


def test_a_32_core_128_gib_host_fits_exactly_16_vms_of_1_core_and_8_gib(
    db: Database, location: Location
) -> None:
    host_id = new_host(db, location, "big")
    request = vm(location, cores=1, memory_gib=8)
    with db.reading() as session:
        offered = offered_cores(as_candidate(session.get_one(Host, host_id)), request)

    assert fill(db, request) == offered == 16

    assert usage(db, host_id) == Usage(cores=16, memory_bytes=128 * GIB)
    assert refusal(db, request) == (
        "no host with 1 free core, 8 GiB of memory and 0 GiB of disk in location fra1: "
        "1 host had too little free memory"
    )


def test_place_takes_what_the_vm_needs_from_the_host_and_records_it(
    db: Database, location: Location
) -> None:
    host_id = new_host(db, location, "big")

    allocation = place_one(db, vm(location, cores=3, memory_gib=6, disk_gib=40), "vm-1")

    assert (allocation.host_id, allocation.consumer) == (host_id, "vm-1")
    assert (
        allocation.cores,
        allocation.memory_bytes,
        allocation.hugepages,
        allocation.disk_bytes,
    ) == (
        3,
        6 * GIB,
        0,
        40 * GIB,
    )
    assert usage(db, host_id) == Usage(cores=3, memory_bytes=6 * GIB, disk_bytes=40 * GIB)
    assert allocations(db) == {"vm-1": "big"}


def test_place_on_a_hugepage_host_takes_whole_pages_and_no_memory(
    db: Database, location: Location
) -> None:
    host_id = new_host(db, location, "paged", hugepages=4)

    allocation = place_one(db, vm(location, memory_gib=1.5, disk_gib=10), "vm-1")

    assert (allocation.memory_bytes, allocation.hugepages) == (0, 2)
    assert usage(db, host_id) == Usage(cores=1, hugepages=2, disk_bytes=10 * GIB)
    assert fill(db, vm(location, memory_gib=1.5), "more") == 1
    assert usage(db, host_id).hugepages == 4


def test_placing_a_consumer_again_returns_its_allocation_and_takes_nothing_more(
    db: Database, location: Location
) -> None:
    host_id = new_host(db, location, "big")
    first = place_one(db, vm(location, cores=2), "vm-1")

    again = place_one(db, vm(location, cores=2), "vm-1")

    assert again == first
    assert usage(db, host_id) == Usage(cores=2, memory_bytes=8 * GIB)


def test_an_overcommitted_host_takes_as_many_vcpus_as_its_ratio_allows(
    db: Database, location: Location
) -> None:
    new_host(db, location, "small", cores=4, cpu_ratio=2.0)

    assert fill(db, vm(location, cores=1, memory_gib=1)) == 8
    assert refusal(db, vm(location, cores=1, memory_gib=1)).endswith(
        "1 host had too few free cores"
    )


def test_memory_overcommit_lets_a_host_take_more_memory_than_it_has(
    db: Database, location: Location
) -> None:
    new_host(db, location, "small", memory_bytes=16 * GIB, memory_ratio=1.5)

    assert fill(db, vm(location, cores=1, memory_gib=4)) == 6


def test_a_disk_bound_host_takes_as_many_vms_as_its_disk_holds(
    db: Database, location: Location
) -> None:
    new_host(db, location, "small", disk_bytes=100 * GIB)

    assert fill(db, vm(location, cores=1, memory_gib=1, disk_gib=30)) == 3
    assert refusal(db, vm(location, memory_gib=1, disk_gib=30)).endswith(
        "1 host had too little free disk"
    )


def test_a_refusal_counts_what_each_stage_removed_in_stage_order(
    db: Database, location: Location
) -> None:
    new_host(db, location, "draining", allocation_state=AllocationState.DRAINING)
    for number in range(3):
        new_host(db, location, f"busy-{number}", cores=4, used_cores=2)

    assert refusal(db, vm(location, cores=4, memory_gib=8, disk_gib=10)) == (
        "no host with 4 free cores, 8 GiB of memory and 10 GiB of disk in location fra1: "
        "1 host was draining, 3 had too few free cores"
    )


def test_a_refusal_names_the_stage_that_removed_the_last_candidates(
    db: Database, location: Location
) -> None:
    new_host(db, location, "maintained", allocation_state=AllocationState.MAINTENANCE)
    new_host(db, location, "dead", health=Health.DEAD)
    new_host(db, location, "full", used_cores=32)
    new_host(db, location, "grouped-a")
    new_host(db, location, "grouped-b")
    place_one(db, vm(location, group="web"), "web-1")
    place_one(db, vm(location, group="web"), "web-2")

    detail = refusal(db, vm(location, group="web"))

    assert detail.endswith(
        ": 1 host was in maintenance, 1 was dead, 1 had too few free cores, "
        "2 held a VM of the same group"
    )


def test_a_refusal_in_a_location_without_hosts_says_there_is_no_host(
    db: Database, location: Location
) -> None:
    with db.transaction() as session:
        add_host(session, add_location(session, "ams1"), "elsewhere")

    assert refusal(db, vm(location)) == (
        "no host with 1 free core, 8 GiB of memory and 0 GiB of disk in location fra1: "
        "there is no host"
    )


def test_a_vm_pinned_to_a_host_in_another_location_is_refused(
    db: Database, location: Location
) -> None:
    with db.transaction() as session:
        elsewhere = add_host(session, add_location(session, "ams1"), "elsewhere").id
    new_host(db, location, "here")

    detail = refusal(db, vm(location, host_id=elsewhere))

    assert detail.endswith(": 1 host was in another location, 1 was not the requested host")


def test_a_pinned_vm_goes_to_its_host_even_when_another_is_emptier(
    db: Database, location: Location
) -> None:
    new_host(db, location, "empty")
    pinned = new_host(db, location, "busy", used_cores=30)

    assert place_one(db, vm(location, host_id=pinned), "vm-1").host_id == pinned


def test_place_skips_every_host_a_stage_removes(db: Database, location: Location) -> None:
    removed: dict[str, dict[str, object]] = {
        "draining": {"allocation_state": AllocationState.DRAINING},
        "maintained": {"allocation_state": AllocationState.MAINTENANCE},
        "unreachable": {"health": Health.UNREACHABLE},
        "dead": {"health": Health.DEAD},
        "arm": {"arch": "aarch64"},
    }
    for name, fields in removed.items():
        new_host(db, location, name, **fields)
    usable = new_host(db, location, "usable", cores=2)

    assert fill(db, vm(location, cores=1, memory_gib=1)) == 2
    assert allocations(db) == {"vm-0": "usable", "vm-1": "usable"}
    assert usage(db, usable).cores == 2


def test_a_refused_placement_leaves_nothing_even_when_its_transaction_commits(
    db: Database, location: Location
) -> None:
    host_id = new_host(db, location, "small", cores=2)
    place_one(db, vm(location, cores=2, memory_gib=1), "vm-1")

    with db.transaction() as session, pytest.raises(NoCapacity):
        place(session, vm(location, cores=1, memory_gib=1), "vm-2")

    assert allocations(db) == {"vm-1": "small"}
    assert usage(db, host_id) == Usage(cores=2, memory_bytes=GIB)


def test_release_gives_back_cores_memory_and_disk_exactly_once(
    db: Database, location: Location
) -> None:
    host_id = new_host(db, location, "big")
    place_one(db, vm(location, cores=2, memory_gib=4, disk_gib=20), "keep")
    place_one(db, vm(location, cores=3, memory_gib=6, disk_gib=40), "vm-1")

    assert release_one(db, "vm-1") is True
    assert usage(db, host_id) == Usage(cores=2, memory_bytes=4 * GIB, disk_bytes=20 * GIB)

    assert release_one(db, "vm-1") is False
    assert usage(db, host_id) == Usage(cores=2, memory_bytes=4 * GIB, disk_bytes=20 * GIB)
    assert allocations(db) == {"keep": "big"}
    assert counter_differences(db) == []


def test_release_gives_back_huge_pages_exactly_once(db: Database, location: Location) -> None:
    host_id = new_host(db, location, "paged", hugepages=8)
    place_one(db, vm(location, memory_gib=1), "keep")
    place_one(db, vm(location, cores=2, memory_gib=2.5, disk_gib=10), "vm-1")
    assert usage(db, host_id) == Usage(cores=3, hugepages=4, disk_bytes=10 * GIB)

    assert release_one(db, "vm-1") is True
    assert release_one(db, "vm-1") is False

    assert usage(db, host_id) == Usage(cores=1, hugepages=1)
    assert counter_differences(db) == []


def test_release_of_a_consumer_that_holds_nothing_does_nothing(
    db: Database, location: Location
) -> None:
    host_id = new_host(db, location, "big")
    place_one(db, vm(location), "vm-1")

    assert release_one(db, "never-placed") is False

    assert usage(db, host_id) == Usage(cores=1, memory_bytes=8 * GIB)


def test_released_capacity_can_be_taken_again(db: Database, location: Location) -> None:
    new_host(db, location, "big")
    request = vm(location, cores=1, memory_gib=8)
    assert fill(db, request) == 16

    release_one(db, "vm-3")

    assert place_one(db, request, "vm-again").host_id is not None
    assert fill(db, request, "more") == 0


def test_a_placement_rolled_back_leaves_nothing(db: Database, location: Location) -> None:
    host_id = new_host(db, location, "paged", hugepages=8)

    with pytest.raises(Crash), db.transaction() as session:
        place(session, vm(location, cores=2, memory_gib=3, disk_gib=10), "vm-1")
        raise Crash

    assert allocations(db) == {}
    assert usage(db, host_id) == Usage()
    assert place_one(db, vm(location, cores=2, memory_gib=3, disk_gib=10), "vm-1").hugepages == 3


def test_a_release_rolled_back_keeps_the_allocation_and_its_capacity(
    db: Database, location: Location
) -> None:
    host_id = new_host(db, location, "big")
    place_one(db, vm(location, cores=2, disk_gib=10), "vm-1")

    with pytest.raises(Crash), db.transaction() as session:
        assert release(session, "vm-1")
        raise Crash

    assert allocations(db) == {"vm-1": "big"}
    assert usage(db, host_id) == Usage(cores=2, memory_bytes=8 * GIB, disk_bytes=10 * GIB)
    assert release_one(db, "vm-1") is True
    assert usage(db, host_id) == Usage()


def test_anti_affinity_puts_group_members_on_different_hosts(
    db: Database, location: Location
) -> None:
    for name in ("a", "b", "c"):
        new_host(db, location, name)

    for member in range(3):
        place_one(db, vm(location, group="web"), f"web-{member}", Policy.PACK)

    assert sorted(allocations(db).values()) == ["a", "b", "c"]


def test_anti_affinity_refuses_when_every_host_holds_a_member(
    db: Database, location: Location
) -> None:
    for name in ("a", "b", "c"):
        new_host(db, location, name)
    for member in range(3):
        place_one(db, vm(location, group="web"), f"web-{member}")

    assert refusal(db, vm(location, group="web")).endswith(": 3 hosts held a VM of the same group")
    assert len(allocations(db)) == 3


def test_anti_affinity_ignores_other_groups_and_vms_without_a_group(
    db: Database, location: Location
) -> None:
    new_host(db, location, "only")
    place_one(db, vm(location, group="web"), "web-1")

    place_one(db, vm(location, group="db"), "db-1")
    place_one(db, vm(location), "plain-1")
    place_one(db, vm(location), "plain-2")

    assert set(allocations(db).values()) == {"only"}


def test_a_released_member_frees_its_host_for_the_group(db: Database, location: Location) -> None:
    new_host(db, location, "a")
    new_host(db, location, "b")
    place_one(db, vm(location, group="web"), "web-1")
    place_one(db, vm(location, group="web"), "web-2")
    freed = allocations(db)["web-1"]

    release_one(db, "web-1")

    assert place_one(db, vm(location, group="web"), "web-3").host_id is not None
    assert allocations(db)["web-3"] == freed


def test_spread_puts_each_vm_on_the_least_loaded_host(db: Database, location: Location) -> None:
    for name in ("a", "b", "c"):
        new_host(db, location, name)

    for number in range(6):
        place_one(db, vm(location), f"vm-{number}", Policy.SPREAD)

    assert allocations(db) == {
        "vm-0": "a",
        "vm-1": "b",
        "vm-2": "c",
        "vm-3": "a",
        "vm-4": "b",
        "vm-5": "c",
    }


def test_pack_fills_the_most_loaded_host_before_the_next(db: Database, location: Location) -> None:
    new_host(db, location, "a", cores=2)
    new_host(db, location, "b", cores=2)
    new_host(db, location, "c", cores=4, used_cores=1)

    for number in range(6):
        place_one(db, vm(location, memory_gib=1), f"vm-{number}", Policy.PACK)

    assert allocations(db) == {
        "vm-0": "c",
        "vm-1": "c",
        "vm-2": "c",
        "vm-3": "a",
        "vm-4": "a",
        "vm-5": "b",
    }


def test_differences_name_a_counter_that_is_not_the_sum_of_its_allocations(
    db: Database, location: Location
) -> None:
    host_id = new_host(db, location, "big")
    place_one(db, vm(location, cores=2, disk_gib=10), "vm-1")
    assert counter_differences(db) == []

    with db.transaction() as session:
        session.execute(update(Host).values(used_cores=5, used_hugepages=0, used_disk_bytes=0))

    assert counter_differences(db) == [
        Difference(host_id, "big", "cores", 5, 2),
        Difference(host_id, "big", "disk_bytes", 0, 10 * GIB),
    ]


def test_differences_count_an_empty_host_as_holding_nothing(
    db: Database, location: Location
) -> None:
    host_id = new_host(db, location, "empty", used_hugepages=0)
    with db.transaction() as session:
        session.execute(update(Host).values(used_memory_bytes=GIB))

    assert counter_differences(db) == [Difference(host_id, "empty", "memory_bytes", GIB, 0)]
    assert over_capacity(db) == []


def test_a_vm_given_back_and_placed_again_in_one_transaction_holds_only_the_new_size(
    db: Database, location: Location
) -> None:
    host_id = new_host(db, location, "big")
    place_one(db, vm(location, cores=2, disk_gib=10), "vm-1")

    with db.transaction() as session:
        assert release(session, "vm-1")
        resized = place(session, vm(location, cores=4, memory_gib=16, disk_gib=10), "vm-1")

    assert resized == Placement("vm-1", host_id, 4, 16 * GIB, 0, 10 * GIB)
    assert usage(db, host_id) == Usage(cores=4, memory_bytes=16 * GIB, disk_bytes=10 * GIB)
    assert counter_differences(db) == []


def test_members_of_a_group_placed_in_one_transaction_go_to_different_hosts(
    db: Database, location: Location
) -> None:
    new_host(db, location, "a")
    new_host(db, location, "b")

    with db.transaction() as session:
        place(session, vm(location, group="web"), "web-1", Policy.PACK)
        place(session, vm(location, group="web"), "web-2", Policy.PACK)
        with pytest.raises(NoCapacity, match="2 hosts held a VM of the same group"):
            place(session, vm(location, group="web"), "web-3", Policy.PACK)

    assert sorted(allocations(db).values()) == ["a", "b"]

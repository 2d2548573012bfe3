"""The weigher as pure functions: a host's load, and spread and pack orders."""

from __future__ import annotations

import pytest

from nubis.scheduling.stages import GIB
from nubis.scheduling.weigher import Policy, load, order
from tests.unit.scheduling.shapes import host


def test_an_empty_host_has_no_load() -> None:
    assert load(host()) == 0


def test_a_full_host_has_a_load_of_two() -> None:
    assert load(host(used_cores=32, used_memory_bytes=128 * GIB)) == 2


def test_load_adds_the_share_of_cores_and_the_share_of_memory() -> None:
    assert load(host(used_cores=16, used_memory_bytes=32 * GIB)) == 0.75


def test_load_is_a_share_of_the_overcommitted_capacity() -> None:
    assert (
        load(host(cpu_ratio=2.0, used_cores=16, memory_ratio=2.0, used_memory_bytes=64 * GIB))
        == 0.5
    )


def test_load_of_a_hugepage_host_counts_its_pages_not_its_memory() -> None:
    paged = host(hugepages=64, used_hugepages=16, used_memory_bytes=128 * GIB)

    assert load(paged) == 0.25


def test_spread_puts_the_least_loaded_host_first() -> None:
    busy, idle, half = host(1, used_cores=24), host(2), host(3, used_memory_bytes=64 * GIB)

    assert order([busy, idle, half], Policy.SPREAD) == [idle, half, busy]


def test_pack_puts_the_most_loaded_host_first() -> None:
    busy, idle, half = host(1, used_cores=24), host(2), host(3, used_memory_bytes=64 * GIB)

    assert order([busy, idle, half], Policy.PACK) == [busy, half, idle]


def test_cores_and_memory_weigh_the_same() -> None:
    cores, memory = host(1, used_cores=8), host(2, used_memory_bytes=32 * GIB)

    assert load(cores) == load(memory)
    assert order([memory, cores], Policy.SPREAD) == [cores, memory]


@pytest.mark.parametrize("policy", list(Policy))
def test_ties_go_to_the_older_host(policy: Policy) -> None:
    older, newer = host(1, used_cores=4), host(2, used_cores=4)

    assert order([newer, older], policy) == [older, newer]


@pytest.mark.parametrize("policy", list(Policy))
def test_order_keeps_every_host_and_leaves_its_argument_alone(policy: Policy) -> None:
    hosts = [host(3), host(1, used_cores=1), host(2, used_cores=2)]
    given = list(hosts)

    ordered = order(hosts, policy)

    assert sorted(ordered, key=lambda h: h.id) == sorted(given, key=lambda h: h.id)
    assert hosts == given


def test_spread_and_pack_are_opposite_orders_of_different_loads() -> None:
    hosts = [host(n, used_cores=n) for n in range(1, 6)]

    assert order(hosts, Policy.PACK) == list(reversed(order(hosts, Policy.SPREAD)))


def test_policies_are_named_as_operators_write_them() -> None:
    assert Policy("spread") is Policy.SPREAD
    assert Policy("pack") is Policy.PACK

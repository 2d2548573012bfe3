"""The filter stages as pure functions: which hosts each keeps, how `sift` counts what
each removed, how `explain` words it, and the memory-per-core rule of `offered_cores`.
"""

from __future__ import annotations

from dataclasses import replace
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nubis.models import AllocationState, Health
from nubis.scheduling.stages import GIB, STAGES, Candidate, Stage, explain, offered_cores, sift
from tests.unit.scheduling.shapes import ELSEWHERE, host, vm


def stage(name: str) -> Stage:
    return next(stage for stage in STAGES if stage.name == name)


def test_stages_run_in_order_from_where_a_host_is_to_what_it_holds() -> None:
    assert [stage.name for stage in STAGES] == [
        "location",
        "pin",
        "arch",
        "draining",
        "maintenance",
        "unreachable",
        "dead",
        "cores",
        "memory",
        "disk",
        "anti-affinity",
    ]


def test_an_ordinary_host_passes_every_stage() -> None:
    assert all(stage.keeps(host(), vm()) for stage in STAGES)


# location, pin, arch


def test_location_keeps_hosts_of_the_request_s_location_only() -> None:
    assert stage("location").keeps(host(), vm())
    assert not stage("location").keeps(host(location_id=ELSEWHERE), vm())


def test_pin_keeps_every_host_when_the_vm_is_not_pinned() -> None:
    assert stage("pin").keeps(host(7), vm())
    assert stage("pin").keeps(host(8), vm())


def test_pin_keeps_only_the_pinned_host() -> None:
    pinned = vm(host_id=UUID(int=7))

    assert stage("pin").keeps(host(7), pinned)
    assert not stage("pin").keeps(host(8), pinned)


def test_arch_keeps_hosts_of_the_requested_architecture_only() -> None:
    assert stage("arch").keeps(host(arch="aarch64"), vm(arch="aarch64"))
    assert not stage("arch").keeps(host(arch="aarch64"), vm())
    assert not stage("arch").keeps(host(), vm(arch="aarch64"))


# allocation state and health


@pytest.mark.parametrize(
    ("name", "state"),
    [("draining", AllocationState.DRAINING), ("maintenance", AllocationState.MAINTENANCE)],
)
def test_an_allocation_state_stage_removes_hosts_in_that_state_only(
    name: str, state: AllocationState
) -> None:
    for other in AllocationState:
        assert stage(name).keeps(host(allocation_state=other), vm()) is (other != state)


@pytest.mark.parametrize(
    ("name", "health"), [("unreachable", Health.UNREACHABLE), ("dead", Health.DEAD)]
)
def test_a_health_stage_removes_hosts_in_that_health_only(name: str, health: Health) -> None:
    for other in Health:
        assert stage(name).keeps(host(health=other), vm()) is (other != health)


def test_a_draining_host_that_is_also_unreachable_is_removed_by_both_stages() -> None:
    sick = host(allocation_state=AllocationState.DRAINING, health=Health.UNREACHABLE)

    assert not stage("draining").keeps(sick, vm())
    assert not stage("unreachable").keeps(sick, vm())


# cores


def test_cores_keeps_a_host_the_vm_fills_exactly() -> None:
    assert stage("cores").keeps(host(used_cores=30), vm(cores=2))


def test_cores_removes_a_host_one_core_short() -> None:
    assert not stage("cores").keeps(host(used_cores=31), vm(cores=2))


def test_cores_counts_overcommitted_cores() -> None:
    # 4 cores at 2.0 give VMs 8.
    small = host(cores=4, cpu_ratio=2.0, used_cores=7)

    assert stage("cores").keeps(small, vm(cores=1))
    assert not stage("cores").keeps(small, vm(cores=2))


def test_cores_never_rounds_a_fractional_capacity_up() -> None:
    # 3 cores at 1.5 give 4.5: a fifth core does not fit.
    odd = host(cores=3, cpu_ratio=1.5)

    assert stage("cores").keeps(replace(odd, used_cores=3), vm(cores=1))
    assert not stage("cores").keeps(replace(odd, used_cores=4), vm(cores=1))


def test_a_cpu_ratio_below_one_gives_vms_fewer_cores_than_the_host_has() -> None:
    assert stage("cores").keeps(host(cores=8, cpu_ratio=0.5), vm(cores=4))
    assert not stage("cores").keeps(host(cores=8, cpu_ratio=0.5), vm(cores=5))


# memory


def test_memory_keeps_a_host_the_vm_fills_exactly() -> None:
    assert stage("memory").keeps(host(used_memory_bytes=124 * GIB), vm(memory_bytes=4 * GIB))


def test_memory_removes_a_host_one_byte_short() -> None:
    assert not stage("memory").keeps(
        host(used_memory_bytes=124 * GIB + 1), vm(memory_bytes=4 * GIB)
    )


def test_memory_counts_overcommitted_memory() -> None:
    # 16 GiB at 1.5 give VMs 24 GiB.
    small = host(memory_bytes=16 * GIB, memory_ratio=1.5, used_memory_bytes=20 * GIB)

    assert stage("memory").keeps(small, vm(memory_bytes=4 * GIB))
    assert not stage("memory").keeps(small, vm(memory_bytes=4 * GIB + 1))


def test_a_vm_takes_whole_1_gib_huge_pages() -> None:
    assert vm(memory_bytes=1).hugepages == 1
    assert vm(memory_bytes=GIB).hugepages == 1
    assert vm(memory_bytes=GIB + 1).hugepages == 2
    assert vm(memory_bytes=3 * GIB // 2).hugepages == 2


def test_memory_on_a_hugepage_host_counts_pages_rounded_up() -> None:
    paged = host(hugepages=8, used_hugepages=6)

    assert stage("memory").keeps(paged, vm(memory_bytes=2 * GIB))
    assert stage("memory").keeps(paged, vm(memory_bytes=3 * GIB // 2))  # 2 pages
    assert not stage("memory").keeps(paged, vm(memory_bytes=2 * GIB + 1))  # 3 pages


def test_memory_on_a_hugepage_host_ignores_its_ordinary_memory_and_ratio() -> None:
    # 128 GiB of memory at 4.0, but only 4 pages for VMs.
    paged = host(hugepages=4, memory_ratio=4.0)

    assert stage("memory").keeps(paged, vm(memory_bytes=4 * GIB))
    assert not stage("memory").keeps(paged, vm(memory_bytes=5 * GIB))
    assert stage("memory").keeps(replace(paged, used_memory_bytes=128 * GIB), vm())


def test_memory_on_an_ordinary_host_ignores_huge_page_counters() -> None:
    assert stage("memory").keeps(host(used_hugepages=999), vm())


# disk


def test_disk_keeps_a_host_the_vm_fills_exactly() -> None:
    assert stage("disk").keeps(host(used_disk_bytes=1004 * GIB), vm(disk_bytes=20 * GIB))


def test_disk_removes_a_host_one_byte_short_and_has_no_overcommit() -> None:
    assert not stage("disk").keeps(host(used_disk_bytes=1004 * GIB + 1), vm(disk_bytes=20 * GIB))
    assert not stage("disk").keeps(host(cpu_ratio=4.0, memory_ratio=4.0), vm(disk_bytes=2048 * GIB))


def test_disk_keeps_a_host_without_disk_for_a_vm_without_disk() -> None:
    assert stage("disk").keeps(host(disk_bytes=0), vm(disk_bytes=0))


# anti-affinity


def test_anti_affinity_keeps_every_host_for_a_vm_without_a_group() -> None:
    assert stage("anti-affinity").keeps(host(groups=frozenset({"web"})), vm())


def test_anti_affinity_removes_a_host_that_holds_a_member_of_the_group() -> None:
    assert not stage("anti-affinity").keeps(host(groups=frozenset({"web", "db"})), vm(group="web"))


def test_anti_affinity_keeps_a_host_that_holds_only_other_groups() -> None:
    assert stage("anti-affinity").keeps(host(groups=frozenset({"db"})), vm(group="web"))
    assert stage("anti-affinity").keeps(host(), vm(group="web"))


# sift


def test_sift_keeps_the_hosts_every_stage_keeps_in_their_order() -> None:
    hosts = [host(1), host(2, used_cores=32), host(3)]

    kept, removed = sift(hosts, vm())

    assert kept == [hosts[0], hosts[2]]
    assert removed == {"cores": 1}


def test_sift_counts_each_host_once_at_the_first_stage_that_removes_it() -> None:
    hosts = [
        host(1, location_id=ELSEWHERE, used_cores=32),  # location, though also full
        host(2, allocation_state=AllocationState.DRAINING, health=Health.DEAD),  # draining
        host(3, used_cores=31),
        host(4, used_cores=32),
        host(5, used_cores=32, used_memory_bytes=128 * GIB),  # cores, though also out of memory
        host(6, used_memory_bytes=126 * GIB),
        host(7, groups=frozenset({"web"})),
        host(8),
    ]

    kept, removed = sift(hosts, vm(group="web"))

    assert kept == [hosts[7]]
    assert removed == {"location": 1, "draining": 1, "cores": 3, "memory": 1, "anti-affinity": 1}
    assert list(removed) == ["location", "draining", "cores", "memory", "anti-affinity"]


def test_sift_leaves_out_the_stages_that_removed_nothing() -> None:
    assert sift([host(1), host(2)], vm()) == ([host(1), host(2)], {})


def test_sift_of_no_hosts_keeps_and_removes_nothing() -> None:
    assert sift([], vm()) == ([], {})


def test_sift_counts_every_stage_when_each_removes_one_host() -> None:
    hosts = [
        host(1, location_id=ELSEWHERE),
        host(2, arch="aarch64"),
        host(3, allocation_state=AllocationState.DRAINING),
        host(4, allocation_state=AllocationState.MAINTENANCE),
        host(5, health=Health.UNREACHABLE),
        host(6, health=Health.DEAD),
        host(7, used_cores=32),
        host(8, used_memory_bytes=128 * GIB),
        host(9, used_disk_bytes=1024 * GIB),
        host(10, groups=frozenset({"web"})),
        host(11),
    ]

    kept, removed = sift(hosts, vm(group="web", host_id=UUID(int=11)))

    # The pin removes every host the location left but the pinned one.
    assert kept == [hosts[10]]
    assert removed == {"location": 1, "pin": 9}


# explain


def test_explain_names_the_first_count_with_hosts_and_the_rest_without() -> None:
    assert explain({"cores": 3, "draining": 1}) == "3 hosts had too few free cores, 1 was draining"


def test_explain_says_host_for_one_and_hosts_for_several() -> None:
    assert explain({"draining": 1}) == "1 host was draining"
    assert explain({"draining": 2}) == "2 hosts were draining"
    assert explain({"memory": 1, "dead": 2}) == "1 host had too little free memory, 2 were dead"


def test_explain_words_every_stage() -> None:
    words = {name: explain({name: 1}) for name in (stage.name for stage in STAGES)}

    assert words == {
        "location": "1 host was in another location",
        "pin": "1 host was not the requested host",
        "arch": "1 host had another architecture",
        "draining": "1 host was draining",
        "maintenance": "1 host was in maintenance",
        "unreachable": "1 host was unreachable",
        "dead": "1 host was dead",
        "cores": "1 host had too few free cores",
        "memory": "1 host had too little free memory",
        "disk": "1 host had too little free disk",
        "anti-affinity": "1 host held a VM of the same group",
    }
    assert explain({"location": 2}) == "2 hosts were in another location"
    assert explain({"anti-affinity": 3}) == "3 hosts held a VM of the same group"


def test_explain_of_what_sift_removed_follows_the_stages() -> None:
    hosts = [
        host(1, used_cores=32),
        host(2, used_cores=32),
        host(3, used_cores=32),
        host(4, allocation_state=AllocationState.DRAINING),
    ]

    _, removed = sift(hosts, vm())

    assert explain(removed) == "1 host was draining, 3 had too few free cores"


def test_explain_of_nothing_removed_says_there_is_no_host() -> None:
    assert explain({}) == "there is no host"


# capacities and the memory-per-core rule


def test_a_host_s_capacities_include_its_overcommit() -> None:
    assert host(cores=8, cpu_ratio=1.5).core_capacity == 12
    assert host(memory_bytes=16 * GIB, memory_ratio=1.25).memory_capacity == 20 * GIB


def test_a_hugepage_host_s_memory_capacity_is_its_pages() -> None:
    assert host(hugepages=100, memory_ratio=2.0).memory_capacity == 100 * GIB


def test_a_request_s_memory_per_core() -> None:
    assert vm(cores=4, memory_bytes=16 * GIB).memory_per_core == 4 * GIB
    assert vm(cores=3, memory_bytes=GIB).memory_per_core == GIB / 3


def test_a_32_core_128_gib_host_offers_16_cores_to_8_gib_per_core_vms() -> None:
    assert offered_cores(host(), vm(cores=1, memory_bytes=8 * GIB)) == 16


def test_a_host_offers_every_core_when_its_memory_backs_them_all() -> None:
    assert offered_cores(host(), vm(cores=1, memory_bytes=4 * GIB)) == 32
    assert offered_cores(host(), vm(cores=1, memory_bytes=2 * GIB)) == 32


def test_offered_cores_round_down_to_whole_cores() -> None:
    assert offered_cores(host(), vm(cores=1, memory_bytes=5 * GIB)) == 25  # 25.6
    assert offered_cores(host(cores=3, cpu_ratio=1.5), vm(cores=1, memory_bytes=GIB)) == 4  # 4.5


def test_offered_cores_count_overcommit_of_cores_and_memory() -> None:
    assert offered_cores(host(cpu_ratio=2.0), vm(cores=1, memory_bytes=2 * GIB)) == 64
    assert offered_cores(host(cpu_ratio=2.0), vm(cores=1, memory_bytes=4 * GIB)) == 32
    assert (
        offered_cores(host(cpu_ratio=2.0, memory_ratio=2.0), vm(cores=1, memory_bytes=4 * GIB))
        == 64
    )


def test_a_hugepage_host_offers_the_cores_its_pages_back() -> None:
    assert offered_cores(host(hugepages=64), vm(cores=1, memory_bytes=8 * GIB)) == 8
    assert (
        offered_cores(host(hugepages=64, memory_ratio=4.0), vm(cores=1, memory_bytes=8 * GIB)) == 8
    )


def filled(shape: Candidate, vm_cores: int, vm_memory: int) -> Candidate:
    """`shape` after taking VMs of `vm_cores` and `vm_memory` until the stages keep it no more."""
    one = vm(cores=vm_cores, memory_bytes=vm_memory, disk_bytes=0)
    while sift([shape], one)[0]:
        shape = replace(
            shape,
            used_cores=shape.used_cores + vm_cores,
            used_memory_bytes=shape.used_memory_bytes + (0 if shape.hugepages else vm_memory),
            used_hugepages=shape.used_hugepages + (one.hugepages if shape.hugepages else 0),
        )
    return shape


@settings(max_examples=300)
@given(
    cores=st.integers(1, 64),
    cpu_ratio=st.sampled_from([0.5, 1.0, 1.1, 1.5, 2.0, 4.0]),
    memory_bytes=st.integers(1, 512 * GIB),
    memory_ratio=st.sampled_from([0.9, 1.0, 1.1, 1.3, 1.5, 2.0]),
    per_core=st.integers(GIB // 4, 64 * GIB),
)
def test_offered_cores_are_the_cores_1_core_vms_of_that_memory_take(
    cores: int, cpu_ratio: float, memory_bytes: int, memory_ratio: float, per_core: int
) -> None:
    shape = host(
        cores=cores, cpu_ratio=cpu_ratio, memory_bytes=memory_bytes, memory_ratio=memory_ratio
    )

    assert filled(shape, 1, per_core).used_cores == offered_cores(
        shape, vm(cores=1, memory_bytes=per_core)
    )


@settings(max_examples=100)
@given(
    cores=st.integers(1, 64),
    hugepages=st.integers(1, 256),
    vm_cores=st.integers(1, 4),
    gib_per_core=st.integers(1, 16),
)
def test_offered_cores_on_a_hugepage_host_are_what_vms_of_whole_gib_per_core_take(
    cores: int, hugepages: int, vm_cores: int, gib_per_core: int
) -> None:
    shape = host(cores=cores, hugepages=hugepages)
    memory = vm_cores * gib_per_core * GIB

    offered = offered_cores(shape, vm(cores=vm_cores, memory_bytes=memory))

    assert filled(shape, vm_cores, memory).used_cores == offered


def test_offered_cores_on_a_hugepage_host_count_the_pages_each_vm_rounds_up_to() -> None:
    # 12 pages; a 1-core 1.5 GiB VM takes 2 of them, so six such VMs fit, not eight.
    paged = host(hugepages=12)

    assert filled(paged, 1, 3 * GIB // 2).used_cores == 6
    assert offered_cores(paged, vm(cores=1, memory_bytes=3 * GIB // 2)) == 6

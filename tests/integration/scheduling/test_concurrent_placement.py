"""Four processes placing VMs at once on PostgreSQL: the guarded reservation never fills
a host past its capacity, however the placements interleave, and every bit of capacity
is used.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import func, select

from nubis.db import Database
from nubis.models import Allocation, AllocationState
from nubis.scheduling.allocator import differences
from nubis.scheduling.stages import GIB
from tests.conftest import REPO
from tests.integration.scheduling.fleet import add_host, add_location, allocations, over_capacity

WORKERS = 4

# Each holds a known number of the placer's VMs (1 core, 2 GiB, 10 GiB of disk).
HOSTS: dict[str, tuple[dict[str, object], int]] = {
    # 48 vCPUs by overcommit, 96 GiB: 48.
    "over": ({"cores": 12, "cpu_ratio": 4.0, "memory_bytes": 96 * GIB}, 48),
    # 60 huge pages, 2 a VM: 30.
    "paged": ({"cores": 64, "memory_bytes": 256 * GIB, "hugepages": 60}, 30),
    # 200 GiB of disk: 20.
    "disky": ({"cores": 32, "disk_bytes": 200 * GIB}, 20),
    # 32 GiB at 1.5: 24.
    "memory": ({"cores": 32, "memory_bytes": 32 * GIB, "memory_ratio": 1.5}, 24),
    "drained": ({"allocation_state": AllocationState.DRAINING}, 0),
}

Placers = Callable[..., list[int]]


@pytest.fixture
def placers() -> Iterator[Placers]:
    """Run placer processes that start together; what each placed. Every one still
    running when the test ends is killed."""
    started: list[subprocess.Popen[str]] = []

    def run(url: str, *args: str, count: int = WORKERS) -> list[int]:
        environment = {**os.environ, "PYTHONPATH": str(REPO)}
        for number in range(count):
            started.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tests.integration.scheduling.placer",
                        url,
                        f"p{number}",
                        *args,
                    ],
                    env=environment,
                    cwd=REPO,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        for process in started:
            assert process.stdout is not None
            assert process.stdout.readline() == "ready\n", process.stderr
        for process in started:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.close()
        placed = []
        for process in started:
            assert process.stdout is not None and process.stderr is not None
            out, err = process.stdout.read(), process.stderr.read()
            assert process.wait(60) == 0, err
            placed.append(int(out))
        return placed

    yield run
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_four_placers_fill_the_hosts_exactly_and_never_past_their_capacity(
    postgres_url: str, placers: Placers
) -> None:
    db = Database.connect(postgres_url)
    try:
        with db.transaction() as session:
            location = add_location(session)
            for name, (fields, _) in HOSTS.items():
                add_host(session, location, name, **fields)

        placed = placers(postgres_url)

        assert over_capacity(db) == []
        with db.reading() as session:
            assert differences(session) == []
            assert session.scalar(select(func.count()).select_from(Allocation)) == sum(placed)
        held = Counter(allocations(db).values())
        assert {name: held[name] for name in HOSTS} == {
            name: fits for name, (_, fits) in HOSTS.items()
        }
        assert sum(placed) == sum(fits for _, fits in HOSTS.values())
        assert all(placed), f"a placer placed nothing: {placed}"
    finally:
        db.dispose()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_four_placers_filling_the_same_groups_put_one_member_of_each_on_each_host(
    postgres_url: str, placers: Placers
) -> None:
    db = Database.connect(postgres_url)
    try:
        with db.transaction() as session:
            location = add_location(session)
            for number in range(6):
                add_host(session, location, f"host-{number}")

        placed = placers(postgres_url, "20")

        assert sum(placed) == 20 * 6
        with db.reading() as session:
            members = session.execute(
                select(
                    Allocation.affinity_group,
                    func.count(),
                    func.count(Allocation.host_id.distinct()),
                ).group_by(Allocation.affinity_group)
            ).all()
            assert differences(session) == []
        assert sorted(members) == sorted((f"group-{number}", 6, 6) for number in range(20))
        assert over_capacity(db) == []
    finally:
        db.dispose()

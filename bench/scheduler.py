"""How fast placement reserves capacity, alone and with concurrent placers, and whether
it ever fills a host past its capacity.

    .venv/bin/python bench/scheduler.py [--quick] [--policy spread|pack]

A PostgreSQL database of 1,000 hosts (rows only, no agents) in three locations: 16 to
128 cores, 64 GiB to 1 TiB, some with 1 GiB huge pages, a few draining, in maintenance
or unreachable, a tenth of them aarch64. Then 10,000 placements (2,000 with --quick)
of VMs of 1 to 16 cores, 1 to 64 GiB and 10 to 200 GiB of disk, a fifth of them in
anti-affinity groups, each `place()` in a transaction of its own: once by one worker
process, once by four at the same time, each run on a database of its own (created and
dropped here) holding the same hosts. After each run, every host's counters are checked
against its capacity and against the sum of its allocations. The last line of output is
one JSON object with every figure; latencies in it are the four-worker run's.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import queue
import random
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, text
from sqlalchemy.exc import DBAPIError

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.store import postgres_database  # noqa: E402
from nubis.db import Database  # noqa: E402
from nubis.db.migrate import upgrade  # noqa: E402
from nubis.errors import NoCapacity  # noqa: E402
from nubis.models import Allocation, AllocationState, Health, Host, Location  # noqa: E402
from nubis.scheduling.allocator import differences, place  # noqa: E402
from nubis.scheduling.stages import GIB, Request  # noqa: E402
from nubis.scheduling.weigher import Policy  # noqa: E402

HOSTS = 1000
SEED = 20240601
TIB = 1024 * GIB
LOCATIONS = (("fsn1", 0.5), ("hel1", 0.3), ("ash1", 0.2))
"""Each location's name and share of the hosts (and of the placements)."""
HOST_SIZES = ((16, 64), (32, 128), (48, 384), (64, 256), (64, 512), (96, 768), (128, 1024))
"""(cores, GiB), drawn with the weights below."""
HOST_WEIGHTS = (10, 20, 20, 20, 15, 10, 5)
VM_CORES = (1, 2, 4, 8, 16)
VM_WEIGHTS = (30, 30, 20, 15, 5)
RETRIES = 3
"""Tries per placement when the database aborts one (a deadlock, say), as a prog would."""


def _hosts(location_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    """The same 1,000 host rows every time."""
    rng = random.Random(SEED)
    rows = []
    for number in range(HOSTS):
        cores, gib = rng.choices(HOST_SIZES, HOST_WEIGHTS)[0]
        uses_hugepages = rng.random() < 0.2
        roll = rng.random()
        rows.append(
            {
                "location_id": rng.choices(location_ids, [share for _, share in LOCATIONS])[0],
                "name": f"host-{number:04d}",
                "credential_sha256": f"{number:064x}",
                "arch": "aarch64" if rng.random() < 0.1 else "x86_64",
                "acceleration": "kvm",
                "underlay_address": f"fd00::{number + 1:x}",
                "cores": cores,
                "threads": cores * 2,
                "memory_bytes": gib * GIB,
                # A huge-page host keeps 16 GiB for itself and does not overcommit.
                "hugepages": gib - 16 if uses_hugepages else 0,
                "disk_bytes": rng.choice((2, 4, 8, 16)) * TIB,
                "cpu_ratio": 1.0 if uses_hugepages else rng.choice((1.0, 2.0, 2.0, 4.0)),
                "memory_ratio": 1.0 if uses_hugepages or rng.random() < 0.9 else 1.2,
                "allocation_state": (
                    AllocationState.DRAINING
                    if roll < 0.02
                    else AllocationState.MAINTENANCE
                    if roll < 0.025
                    else AllocationState.ACCEPTING
                ),
                "health": Health.UNREACHABLE if 0.025 <= roll < 0.03 else Health.ONLINE,
            }
        )
    return rows


def _requests(count: int, location_ids: list[uuid.UUID]) -> list[tuple[str, Request]]:
    """`count` (consumer, request) pairs, the same every time."""
    rng = random.Random(SEED + 1)
    groups = max(1, count // 25)  # about five members a group
    requests = []
    for number in range(count):
        cores = rng.choices(VM_CORES, VM_WEIGHTS)[0]
        request = Request(
            location_id=rng.choices(location_ids, [share for _, share in LOCATIONS])[0],
            cores=cores,
            memory_bytes=min(64, cores * rng.choice((1, 2, 4))) * GIB,
            disk_bytes=rng.randint(10, 200) * GIB,
            arch="aarch64" if rng.random() < 0.05 else "x86_64",
            group=f"group-{rng.randrange(groups)}" if rng.random() < 0.2 else None,
        )
        requests.append((f"vm-{number:05d}", request))
    return requests


def populate(db: Database) -> list[uuid.UUID]:
    """The locations and hosts; the locations' ids."""
    with db.transaction() as session:
        location_ids = []
        for number, (name, _) in enumerate(LOCATIONS):
            location = Location(name=name, display_name=name, prefix=f"2001:db8:{number + 1}::/48")
            session.add(location)
            session.flush()
            location_ids.append(location.id)
        session.execute(insert(Host), _hosts(location_ids))
    # What autovacuum would soon do; committed, or the statistics are rolled back too.
    with db.engine.begin() as connection:
        connection.execute(text("ANALYZE"))
    return location_ids


@dataclass(frozen=True)
class Outcome:
    """What one worker did: latencies in milliseconds, and its wall-clock start and end."""

    latencies: list[float]
    refusals: int
    aborts: int
    began: float
    ended: float


def work(
    url: str,
    requests: list[tuple[str, Request]],
    policy: Policy,
    barrier: Barrier,
    results: Queue[Outcome],
) -> None:
    """A worker process: place each request in a transaction of its own."""
    db = Database.connect(url, pool_size=1)
    with db.reading() as session:
        session.execute(text("SELECT 1"))
    latencies = []
    refusals = aborts = 0
    barrier.wait(timeout=120)
    began = time.time()
    for consumer, request in requests:
        start = time.perf_counter()
        for attempt in range(RETRIES):
            try:
                with db.transaction() as session:
                    place(session, request, consumer, policy)
            except NoCapacity:
                refusals += 1
            except DBAPIError:
                aborts += 1
                if attempt + 1 < RETRIES:
                    continue
                raise
            break
        latencies.append((time.perf_counter() - start) * 1000)
    ended = time.time()
    db.dispose()
    results.put(Outcome(latencies, refusals, aborts, began, ended))


@dataclass(frozen=True)
class Run:
    rate: float
    latencies: list[float]
    refusals: int
    aborts: int


def run(url: str, requests: list[tuple[str, Request]], processes: int, policy: Policy) -> Run:
    """`processes` workers share `requests` out and place them at the same time."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results: Queue[Outcome] = context.Queue()
    workers = [
        context.Process(
            target=work, args=(url, requests[index::processes], policy, barrier, results)
        )
        for index in range(processes)
    ]
    for worker in workers:
        worker.start()
    outcomes: list[Outcome] = []
    try:
        while len(outcomes) < processes:
            try:
                outcomes.append(results.get(timeout=1))
            except queue.Empty:
                if any(worker.exitcode not in (None, 0) for worker in workers):
                    raise RuntimeError("a worker failed; its traceback is above") from None
    finally:
        for worker in workers:
            worker.join(5)
            if worker.is_alive():
                worker.kill()
    span = max(o.ended for o in outcomes) - min(o.began for o in outcomes)
    return Run(
        rate=len(requests) / span,
        latencies=[latency for o in outcomes for latency in o.latencies],
        refusals=sum(o.refusals for o in outcomes),
        aborts=sum(o.aborts for o in outcomes),
    )


@dataclass(frozen=True)
class Check:
    overcommitted: int
    """Hosts whose counters, or the sum of whose allocations, exceed capacity times ratio."""
    differences: int
    """Host counters that are not the sum of the host's allocations."""
    group_violations: int
    """Hosts holding two allocations of one anti-affinity group."""
    closed: int
    """Allocations on hosts that take no VMs (draining, maintenance, unreachable)."""
    allocations: int
    hosts_used: int


def check(db: Database) -> Check:
    sums = (
        select(
            Allocation.host_id,
            func.sum(Allocation.cores).label("cores"),
            func.sum(Allocation.memory_bytes).label("memory"),
            func.sum(Allocation.hugepages).label("hugepages"),
            func.sum(Allocation.disk_bytes).label("disk"),
        )
        .group_by(Allocation.host_id)
        .subquery()
    )
    over = or_(
        Host.used_cores > Host.cores * Host.cpu_ratio,
        Host.used_memory_bytes > Host.memory_bytes * Host.memory_ratio,
        Host.used_hugepages > Host.hugepages,
        Host.used_disk_bytes > Host.disk_bytes,
        sums.c.cores > Host.cores * Host.cpu_ratio,
        sums.c.memory > Host.memory_bytes * Host.memory_ratio,
        sums.c.hugepages > Host.hugepages,
        sums.c.disk > Host.disk_bytes,
    )
    shared = (
        select(Allocation.host_id)
        .where(Allocation.affinity_group.is_not(None))
        .group_by(Allocation.host_id, Allocation.affinity_group)
        .having(func.count() > 1)
        .subquery()
    )
    closed = or_(Host.allocation_state != AllocationState.ACCEPTING, Host.health != Health.ONLINE)
    with db.reading() as session:
        return Check(
            overcommitted=session.scalar(
                select(func.count())
                .select_from(Host)
                .outerjoin(sums, sums.c.host_id == Host.id)
                # An outer join's missing sums are NULL, and a NULL comparison is not true.
                .where(over)
            )
            or 0,
            differences=len(differences(session)),
            group_violations=session.scalar(select(func.count()).select_from(shared)) or 0,
            closed=session.scalar(
                select(func.count())
                .select_from(Allocation)
                .join(Host, and_(Host.id == Allocation.host_id, closed))
            )
            or 0,
            allocations=session.scalar(select(func.count()).select_from(Allocation)) or 0,
            hosts_used=session.scalar(select(func.count(func.distinct(Allocation.host_id)))) or 0,
        )


def percentile(values: list[float], share: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[round(share * 1000) - 1]


def measure(processes: int, placements: int, policy: Policy) -> tuple[Run, Check]:
    with postgres_database() as url:
        db = Database.connect(url)
        upgrade(db)
        location_ids = populate(db)
        result = run(url, _requests(placements, location_ids), processes, policy)
        checked = check(db)
        db.dispose()
    p50, p99 = percentile(result.latencies, 0.5), percentile(result.latencies, 0.99)
    print(
        f"{processes} worker process(es), {placements:,} placements on {HOSTS:,} hosts "
        f"({policy}): {result.rate:,.0f} placements/s, latency p50 {p50:.1f} ms, "
        f"p99 {p99:.1f} ms, max {max(result.latencies):.1f} ms",
        flush=True,
    )
    print(
        f"  {checked.allocations:,} placed on {checked.hosts_used} hosts, "
        f"{result.refusals} refused (NoCapacity), {result.aborts} aborted by the database "
        f"and retried; {checked.overcommitted} hosts over capacity, "
        f"{checked.differences} counter differences, {checked.group_violations} "
        f"anti-affinity violations, {checked.closed} on hosts that take no VMs",
        flush=True,
    )
    if checked.allocations + result.refusals != placements:
        raise RuntimeError(
            f"{checked.allocations} allocations and {result.refusals} refusals "
            f"for {placements} placements"
        )
    return result, checked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    parser.add_argument("--policy", type=Policy, choices=list(Policy), default=Policy.SPREAD)
    args = parser.parse_args()
    placements = 2000 if args.quick else 10000

    alone, alone_checked = measure(1, placements, args.policy)
    together, together_checked = measure(4, placements, args.policy)
    figures = {
        "placements_per_s_1w": round(alone.rate),
        "placements_per_s_4w": round(together.rate),
        "p50_ms": round(percentile(together.latencies, 0.5), 1),
        "p99_ms": round(percentile(together.latencies, 0.99), 1),
        "overcommitted_hosts": alone_checked.overcommitted + together_checked.overcommitted,
        "differences": alone_checked.differences + together_checked.differences,
        "p50_ms_1w": round(percentile(alone.latencies, 0.5), 1),
        "p99_ms_1w": round(percentile(alone.latencies, 0.99), 1),
        "refusals_1w": alone.refusals,
        "refusals_4w": together.refusals,
        "aborts_4w": together.aborts,
        "anti_affinity_violations": (
            alone_checked.group_violations + together_checked.group_violations
        ),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

"""How fast the engine runs labels, and how fast a semaphore wakes a napping strand.

    .venv/bin/python bench/engine.py [--quick]

Label runs per second with 1, 2 and 4 `nubis worker` processes on PostgreSQL and one
on SQLite (each run on a database of its own, created and dropped here), and the
wake latency from a semaphore increment to the start of the label it wakes, through
PostgreSQL's LISTEN/NOTIFY to a worker in another process. The last line of output is
one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.progs import Chain, Waiter  # noqa: E402
from bench.store import postgres_database  # noqa: E402
from nubis.choices import StrandStatus  # noqa: E402
from nubis.db import Database  # noqa: E402
from nubis.db.migrate import upgrade  # noqa: E402
from nubis.engine import incr, start  # noqa: E402
from nubis.models.engine import Strand  # noqa: E402

THREADS_PER_WORKER = 2


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="nubis-bench-") as folder:
        yield f"sqlite:///{folder}/nubis.db"


@contextmanager
def workers(url: str, count: int, threads: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "NUBIS_DATABASE_URL": url,
        "NUBIS_LOG_LEVEL": "WARNING",
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "nubis", "worker", "--threads", str(threads)],
            env=environment,
            cwd=REPO,
        )
        for _ in range(count)
    ]
    try:
        yield processes
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


def _active(db: Database) -> int:
    with db.reading() as session:
        return session.scalar(select(func.count()).where(Strand.status == StrandStatus.ACTIVE)) or 0


def _wait_idle(db: Database, timeout: float) -> None:
    end = time.monotonic() + timeout
    while _active(db):
        if time.monotonic() > end:
            raise TimeoutError(f"strands still active after {timeout} s")
        time.sleep(0.02)


def label_throughput(url: str, processes: int, strands: int, hops: int) -> float:
    """Label runs per second for `processes` workers running `strands` chains."""
    db = Database.connect(url)
    upgrade(db)
    with workers(url, processes, THREADS_PER_WORKER):
        # A warm-up batch: the workers have started and imported everything.
        with db.transaction() as session:
            for _ in range(processes * THREADS_PER_WORKER * 4):
                start(session, Chain, {"left": 2})
        _wait_idle(db, 60)
        with db.transaction() as session:
            batch = [start(session, Chain, {"left": hops}) for _ in range(strands)]
        _wait_idle(db, 600)
    # From the first label's start to the last strand's exit: the rate at which the
    # workers run labels, whatever the time it took to notice the batch (on SQLite
    # a worker in another process learns of new strands only at its idle check).
    with db.reading() as session:
        finished = session.scalar(select(func.max(Strand.finished_at)).where(Strand.id.in_(batch)))
        stacks = session.scalars(select(Strand.stack).where(Strand.id.in_(batch))).all()
    db.dispose()
    assert isinstance(finished, datetime)
    began = min(float(stack[0]["data"]["began"]) for stack in stacks)
    return strands * (hops + 1) / (finished.timestamp() - began)


def wake_latencies(url: str, samples: int) -> list[float]:
    """Milliseconds from a semaphore increment to the start of the label it wakes."""
    db = Database.connect(url)
    upgrade(db)
    latencies = []
    with workers(url, 1, THREADS_PER_WORKER):
        with db.transaction() as session:
            sid = start(session, Waiter)
        for sample in range(samples):
            _wait_napping(db, sid, sample)
            time.sleep(0.01)
            with db.transaction() as session:
                incr(session, sid, "wake")
                signalled = time.time()
            woke = _wait_napping(db, sid, sample + 1)
            latencies.append((woke - signalled) * 1000)
    db.dispose()
    return latencies


def _wait_napping(db: Database, sid: uuid.UUID, wakes: int) -> float:
    """Wait until the waiter has woken `wakes` times and napped again; its last wake-up."""
    end = time.monotonic() + 30
    while time.monotonic() < end:
        with db.reading() as session:
            found = session.get(Strand, sid)
            assert found is not None
            woke = found.stack[0]["data"].get("woke", [])
            if len(woke) == wakes and found.lease_owner is None:
                return float(woke[-1]) if woke else 0.0
        time.sleep(0.001)
    raise TimeoutError("the waiter did not wake")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    args = parser.parse_args()
    strands, hops, samples = (300, 9, 40) if args.quick else (1000, 19, 200)

    figures: dict[str, float] = {}
    for processes in (1, 2, 4):
        with postgres_database() as url:
            rate = label_throughput(url, processes, strands, hops)
        figures[f"pg_{processes}w_label_runs_per_s"] = round(rate)
        print(f"PostgreSQL, {processes} worker process(es): {rate:,.0f} label runs/s", flush=True)
    with sqlite_database() as url:
        rate = label_throughput(url, 1, strands, hops)
    figures["sqlite_label_runs_per_s"] = round(rate)
    print(f"SQLite, 1 worker process: {rate:,.0f} label runs/s", flush=True)

    with postgres_database() as url:
        latencies = wake_latencies(url, samples)
    p50 = statistics.median(latencies)
    p95 = statistics.quantiles(latencies, n=20)[-1]
    figures["wake_p50_ms"] = round(p50, 1)
    figures["wake_p95_ms"] = round(p95, 1)
    print(f"wake latency over {samples} wake-ups: p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

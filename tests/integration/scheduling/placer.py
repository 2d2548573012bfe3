"""A placement worker for the concurrency tests.

    python -m tests.integration.scheduling.placer URL NAME [GROUPS]

Prints `ready`, waits for a line on stdin (so that every worker starts at once), then
places VMs of one shape in location fra1, each in its own transaction, until no host
has room, and prints how many it placed. With GROUPS, it fills anti-affinity groups
group-0, group-1, ... one after another instead. A refusal while a host still fits
(the hosts it tried filled up meanwhile) is tried again.
"""

from __future__ import annotations

import sys
from dataclasses import replace

from sqlalchemy import select

from nubis.db import Database
from nubis.errors import NoCapacity
from nubis.models import Location
from nubis.scheduling.allocator import candidates, place
from nubis.scheduling.stages import GIB, Request, sift
from tests.integration.scheduling.fleet import LOCATION

CORES = 1
MEMORY_BYTES = 2 * GIB
DISK_BYTES = 10 * GIB
RETRIES = 200
"""Refusals in a row, each while a host still fits, after which the worker gives up."""


def main(argv: list[str]) -> int:
    url, name, *groups = argv
    db = Database.connect(url)
    with db.reading() as session:
        location_id = session.scalars(select(Location.id).where(Location.name == LOCATION)).one()
    shape = Request(
        location_id=location_id, cores=CORES, memory_bytes=MEMORY_BYTES, disk_bytes=DISK_BYTES
    )
    requests = (
        [replace(shape, group=f"group-{number}") for number in range(int(groups[0]))]
        if groups
        else [shape]
    )
    with db.sessions() as session:  # compile every statement before the start, then undo
        place(session, requests[0], f"{name}-warm-up")
        session.rollback()
    print("ready", flush=True)
    sys.stdin.readline()
    placed = 0
    for request in requests:
        try:
            placed += fill(db, request, f"{name}-{placed}")
        except RuntimeError as error:
            print(error, file=sys.stderr)
            return 1
    print(placed, flush=True)
    return 0


def fill(db: Database, request: Request, prefix: str) -> int:
    """Place `request` until no host fits it; how many were placed."""
    placed = refused = 0
    while True:
        try:
            with db.transaction() as session:
                place(session, request, f"{prefix}-{placed}")
        except NoCapacity:
            with db.reading() as session:
                kept, _ = sift(candidates(session, request), request)
            if not kept:
                return placed
            refused += 1
            if refused == RETRIES:
                raise RuntimeError(
                    f"refused {RETRIES} times in a row while a host fitted"
                ) from None
            continue
        placed += 1
        refused = 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Hosts and VMs as placement sees them, built from a plain default by naming what differs."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from uuid import UUID

from nubis.models import AllocationState, Health
from nubis.scheduling.stages import GIB, Candidate, Request

HERE = UUID(int=1)
ELSEWHERE = UUID(int=2)


def host(number: int = 100, **changes: Any) -> Candidate:
    """An empty, accepting, online 32-core 128 GiB x86_64 host with 1 TiB of disk."""
    base = Candidate(
        id=UUID(int=number),
        location_id=HERE,
        arch="x86_64",
        allocation_state=AllocationState.ACCEPTING,
        health=Health.ONLINE,
        cores=32,
        cpu_ratio=1.0,
        used_cores=0,
        memory_bytes=128 * GIB,
        memory_ratio=1.0,
        used_memory_bytes=0,
        hugepages=0,
        used_hugepages=0,
        disk_bytes=1024 * GIB,
        used_disk_bytes=0,
    )
    return replace(base, **changes)


def vm(**changes: Any) -> Request:
    """A 2-core 4 GiB VM with 20 GiB of disk, in HERE."""
    return replace(
        Request(location_id=HERE, cores=2, memory_bytes=4 * GIB, disk_bytes=20 * GIB), **changes
    )

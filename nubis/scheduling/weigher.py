"""Which of the hosts that fit gets the VM: `spread` takes the least loaded, `pack` the
most loaded. Like the stages, the load is one definition with a pure and an SQL face.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Float, case, cast

from nubis.models import Host
from nubis.scheduling.stages import Candidate


class Policy(StrEnum):
    SPREAD = "spread"
    """The least used host: VMs share hosts as little as they can."""
    PACK = "pack"
    """The most used host that fits: hosts fill up one by one, the rest stay free."""


def load(host: Candidate) -> float:
    """The share of cores plus the share of memory in use (0 to 2)."""
    if host.hugepages:
        memory = host.used_hugepages / host.hugepages
    else:
        memory = host.used_memory_bytes / (host.memory_bytes * host.memory_ratio)
    return host.used_cores / (host.cores * host.cpu_ratio) + memory


def load_clause() -> ColumnElement[Any]:
    memory = case(
        (Host.hugepages > 0, cast(Host.used_hugepages, Float) / Host.hugepages),
        else_=cast(Host.used_memory_bytes, Float) / (Host.memory_bytes * Host.memory_ratio),
    )
    return cast(Host.used_cores, Float) / (Host.cores * Host.cpu_ratio) + memory


def order(hosts: list[Candidate], policy: Policy) -> list[Candidate]:
    """`hosts`, best first; ties go to the older host."""
    sign = 1 if policy is Policy.SPREAD else -1
    return sorted(hosts, key=lambda host: (sign * load(host), host.id))


def order_clause(policy: Policy) -> list[ColumnElement[Any]]:
    weight = load_clause()
    return [weight.asc() if policy is Policy.SPREAD else weight.desc(), Host.id.asc()]

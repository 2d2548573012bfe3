"""Locations and hosts as rows, built from a plain default by naming what differs, and
the state of the hosts read back for comparison."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from nubis.db import Database
from nubis.models import Allocation, Host, Location
from nubis.scheduling.stages import GIB, Candidate

LOCATION = "fra1"


def add_location(session: Session, name: str = LOCATION) -> Location:
    location = Location(name=name, display_name=name.upper(), prefix="2001:db8:1::/48")
    session.add(location)
    session.flush()
    return location


def add_host(session: Session, location: Location | UUID, name: str, **fields: Any) -> Host:
    """An empty, accepting, online 32-core 128 GiB x86_64 host with 1 TiB of disk."""
    values: dict[str, Any] = {
        "arch": "x86_64",
        "acceleration": "kvm",
        "underlay_address": "2001:db8::1",
        "cores": 32,
        "memory_bytes": 128 * GIB,
        "disk_bytes": 1024 * GIB,
        **fields,
    }
    values.setdefault("threads", values["cores"])
    location_id = location.id if isinstance(location, Location) else location
    host = Host(
        location_id=location_id,
        name=name,
        credential_sha256=hashlib.sha256(name.encode()).hexdigest(),
        **values,
    )
    session.add(host)
    session.flush()
    return host


def clear(session: Session) -> None:
    """Remove every allocation, host and location."""
    session.execute(delete(Allocation))
    session.execute(delete(Host))
    session.execute(delete(Location))


@dataclass(frozen=True)
class Usage:
    """What a host's counters say it holds."""

    cores: int = 0
    memory_bytes: int = 0
    hugepages: int = 0
    disk_bytes: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.cores + other.cores,
            self.memory_bytes + other.memory_bytes,
            self.hugepages + other.hugepages,
            self.disk_bytes + other.disk_bytes,
        )


def usage(db: Database, host_id: UUID) -> Usage:
    with db.reading() as session:
        host = session.get_one(Host, host_id)
        return Usage(
            host.used_cores, host.used_memory_bytes, host.used_hugepages, host.used_disk_bytes
        )


def usages(db: Database) -> dict[str, Usage]:
    """Every host's counters, by host name."""
    with db.reading() as session:
        return {
            host.name: Usage(
                host.used_cores, host.used_memory_bytes, host.used_hugepages, host.used_disk_bytes
            )
            for host in session.scalars(select(Host))
        }


def allocations(db: Database) -> dict[str, str]:
    """Every allocation, as its consumer and the name of its host."""
    with db.reading() as session:
        rows = session.execute(select(Allocation.consumer, Host.name).join(Host)).all()
        return {consumer: host for consumer, host in rows}


def as_candidate(host: Host, groups: frozenset[str] = frozenset()) -> Candidate:
    """The host as placement sees it, holding members of `groups`."""
    fields = {
        name: getattr(host, name) for name in Candidate.__dataclass_fields__ if name != "groups"
    }
    return Candidate(**fields, groups=groups)


def over_capacity(db: Database) -> list[str]:
    """Every host counter below zero or above the host's capacity."""
    found = []
    with db.reading() as session:
        for host in session.scalars(select(Host).order_by(Host.name)):
            bounds = {
                "cores": (host.used_cores, host.cores * host.cpu_ratio),
                "memory_bytes": (host.used_memory_bytes, host.memory_bytes * host.memory_ratio),
                "hugepages": (host.used_hugepages, host.hugepages),
                "disk_bytes": (host.used_disk_bytes, host.disk_bytes),
            }
            found += [
                f"{host.name}: {counter} {used} not in 0..{limit}"
                for counter, (used, limit) in bounds.items()
                if not 0 <= used <= limit
            ]
    return found

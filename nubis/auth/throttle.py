"""Slowing down password guessing, per account and per source address.

Failures are counted in a window. Past a threshold, each further failure blocks the
key for twice as long as the one before, up to a cap; while blocked, attempts are
refused without looking at the password. A successful login clears its account's
count (not its source's: one good password does not excuse a source's guessing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from nubis.clock import now
from nubis.models import LoginThrottle


@dataclass(frozen=True)
class Limit:
    free_failures: int
    """Failures in a window before blocking starts."""
    window: timedelta = timedelta(minutes=15)
    first_block: timedelta = timedelta(seconds=30)
    max_block: timedelta = timedelta(minutes=15)

    def block_after(self, failures: int) -> timedelta | None:
        over = failures - self.free_failures
        if over <= 0:
            return None
        block: timedelta = self.first_block * 2 ** min(over - 1, 20)
        return min(self.max_block, block)


ACCOUNT = Limit(free_failures=5)
SOURCE = Limit(free_failures=50)


def account_key(email: str) -> str:
    return f"account:{email[:254]}"


def source_key(address: str) -> str:
    return f"source:{address[:64]}"


def _row(session: Session, key: str, at: datetime) -> LoginThrottle:
    """The key's row, locked for this transaction (made first if need be)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(
        dialect.insert(LoginThrottle)
        .values(key=key, failures=0, window_start=at)
        .on_conflict_do_nothing()
    )
    return session.scalars(
        select(LoginThrottle).where(LoginThrottle.key == key).with_for_update()
    ).one()


def blocked_for(session: Session, keys: list[str]) -> int:
    """Seconds until every key in `keys` may try again; 0 if none is blocked."""
    at = now()
    until = session.scalar(
        select(func.max(LoginThrottle.blocked_until)).where(
            LoginThrottle.key.in_(keys), LoginThrottle.blocked_until > at
        )
    )
    if until is None:
        return 0
    return max(1, math.ceil((until - at).total_seconds()))


def record_failure(session: Session, key: str, limit: Limit) -> None:
    at = now()
    row = _row(session, key, at)
    if at - row.window_start > limit.window:
        row.failures, row.window_start = 0, at
    row.failures += 1
    block = limit.block_after(row.failures)
    if block is not None:
        row.blocked_until = at + block


def clear(session: Session, key: str) -> None:
    row = session.get(LoginThrottle, key)
    if row is not None:
        session.delete(row)

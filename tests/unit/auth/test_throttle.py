"""How long repeated login failures block."""

from __future__ import annotations

from datetime import timedelta

from nubis.auth.throttle import Limit


def test_failures_up_to_the_threshold_do_not_block() -> None:
    limit = Limit(free_failures=5)
    assert all(limit.block_after(n) is None for n in range(6))


def test_each_further_failure_doubles_the_block_up_to_the_cap() -> None:
    limit = Limit(free_failures=5)
    blocks = [limit.block_after(n) for n in range(6, 12)]
    assert blocks == [timedelta(seconds=s) for s in (30, 60, 120, 240, 480, 900)]
    assert limit.block_after(10_000) == timedelta(minutes=15)

"""The doorbell: a wake-up that a waiter cannot miss."""

from __future__ import annotations

import threading
import time

from nubis.engine.doorbell import Doorbell


def test_wait_returns_at_once_after_a_ring_since_seen() -> None:
    bell = Doorbell()
    seen = bell.rings()
    bell.ring()
    started = time.monotonic()
    assert bell.wait(seen, timeout=10) is True
    assert time.monotonic() - started < 1


def test_wait_times_out_without_a_ring() -> None:
    bell = Doorbell()
    started = time.monotonic()
    assert bell.wait(bell.rings(), timeout=0.2) is False
    elapsed = time.monotonic() - started
    assert 0.15 <= elapsed < 5


def test_rings_counts_every_ring() -> None:
    bell = Doorbell()
    assert bell.rings() == 0
    for _ in range(3):
        bell.ring()
    assert bell.rings() == 3


def test_a_ring_from_another_thread_wakes_a_waiter_quickly() -> None:
    bell = Doorbell()
    seen = bell.rings()
    woke: list[tuple[bool, float]] = []
    waiting = threading.Event()

    def waiter() -> None:
        waiting.set()
        started = time.monotonic()
        woke.append((bell.wait(seen, timeout=30), time.monotonic() - started))

    thread = threading.Thread(target=waiter)
    thread.start()
    assert waiting.wait(5)
    time.sleep(0.05)
    bell.ring()
    thread.join(5)
    assert not thread.is_alive()
    rang, elapsed = woke[0]
    assert rang is True
    assert elapsed < 2


def test_one_ring_wakes_every_waiter() -> None:
    bell = Doorbell()
    seen = bell.rings()
    results: list[bool] = []
    lock = threading.Lock()

    def waiter() -> None:
        rang = bell.wait(seen, timeout=30)
        with lock:
            results.append(rang)

    threads = [threading.Thread(target=waiter) for _ in range(5)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    bell.ring()
    for thread in threads:
        thread.join(5)
    assert results == [True] * 5


def test_a_ring_between_rings_and_wait_is_not_lost() -> None:
    bell = Doorbell()
    seen = bell.rings()
    # The ring lands after the waiter looked at the count but before it sleeps.
    ringer = threading.Thread(target=bell.ring)
    ringer.start()
    ringer.join()
    started = time.monotonic()
    assert bell.wait(seen, timeout=2) is True
    assert time.monotonic() - started < 1


def test_a_waiter_that_saw_the_last_ring_sleeps_until_the_next() -> None:
    bell = Doorbell()
    bell.ring()
    seen = bell.rings()
    assert bell.wait(seen, timeout=0.05) is False
    bell.ring()
    assert bell.wait(seen, timeout=0.05) is True

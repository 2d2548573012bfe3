"""Progs the benchmarks run; worker processes import them as `bench.progs`."""

from __future__ import annotations

import time

from nubis.engine import Prog, label


class Chain(Prog):
    """Hops `left` times, then exits: `left + 1` label runs that do nothing else
    but note when the first one began."""

    @label
    def start(self) -> None:
        self.frame.setdefault("began", time.time())
        if self.frame["left"] == 0:
            self.exit()
        self.frame["left"] -= 1
        self.hop("start")


class Waiter(Prog):
    """Naps for an hour; each wake-up notes when its label started."""

    @label
    def start(self) -> None:
        started = time.time()
        if self.when("wake"):
            self.decr("wake")
            self.frame.setdefault("woke", []).append(started)
        self.nap(3600)

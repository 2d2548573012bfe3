"""Self-fencing, like a watchdog: a host cut off from the control plane and from its
peers stops its VMs before the control plane may declare it dead and run them
elsewhere, so that a VM never runs on two hosts.

The `Watchdog` is a thread of its own, so that an HTTP call that hangs never delays
it. Each `CHECK_INTERVAL` it asks `must_fence`: has the agent not reached the control
plane for `fence_seconds` (the last desired state's), and does it reach fewer than
half of its peers (each silent for longer than `fence_seconds`)? Then it SIGKILLs
every VM at once, and closes the `Gate`: the agent starts no VM until a status POST
has succeeded and the GET right after it fetched the desired state. The control
plane serializes its decision that a host is dead with that host's heartbeats (on
the host's row), so a desired state fetched right after a heartbeat went through
says whether the VMs are still this host's.

With no peers, or no `fence_seconds`, it never fences: an outage of the control plane
alone must never stop a VM.

What must outlive the agent is on disk: the watch (peers, `fence_seconds`) and when
the control plane last answered (`watch.json`), so that an agent restarted while its
host is cut off still fences in time; and that it fenced (`fenced`), so that the first
status after the fence says so even if the agent restarted in between.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from nubis.agent.peers import PROBE_INTERVAL, PeerBook, Prober, Responder
from nubis.agent.qemu import QemuError, process
from nubis.agent.qemu.paths import VmPaths, vm_ids, write_atomically
from nubis.protocol import PROBE_PORT, Peer, PeerSeen

log = logging.getLogger(__name__)

CHECK_INTERVAL = 0.25
"""How often the watchdog decides; a fence comes at most this late."""
WATCH_FILE = "watch.json"
FENCED_FILE = "fenced"
PERSIST_EVERY = 1.0
"""How often, at most, the time the control plane last answered is written down."""


def quorate(reachable: int, watched: int) -> bool:
    """Whether the host and the peers it reaches are a majority of the group made of it
    and the peers it watches: (reachable + 1) > (watched + 1) / 2, that is, it reaches
    at least half of them. With two peers, one is enough: a third host cut off must
    not take the two others down with it."""
    return 2 * reachable >= watched


def must_fence(
    now: float, reached_at: float, fence_seconds: float | None, watched: int, reachable: int
) -> bool:
    """Whether the host must stop its VMs: it has peers and a fence time, has not
    reached the control plane for longer than that, and is not quorate."""
    if fence_seconds is None or watched == 0:
        return False
    if now - reached_at <= fence_seconds:
        return False
    return not quorate(reachable, watched)


def kill_all(vms_root: Path) -> list[str]:
    """SIGKILL every VM's QEMU at once, then wait until each is gone; the VMs that ran.

    One after the other would make a fence as slow as the sum of the VMs' teardowns.
    """
    running = []
    for vm_id in vm_ids(vms_root):
        try:
            paths = VmPaths.of(vms_root, vm_id)
            found = process.pid(paths)
        except (QemuError, OSError):
            continue
        if found is None:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(found, signal.SIGKILL)
        running.append(paths)
    for paths in running:
        try:
            process.kill(paths)
        except (QemuError, OSError) as error:
            log.error("fencing: VM %s: %s", paths.vm_id, error)
    return [paths.vm_id for paths in running]


class Gate:
    """Whether this host may start VMs.

    Closed when the agent starts and at a fence. The agent opens it with a desired
    state fetched by the GET right after a status POST that succeeded, with no fence
    in between (`epoch` tells: it grows at each fence) and no failed call.
    """

    def __init__(self, marker: Path | None = None) -> None:
        """`marker`: the file that says the host fenced, across restarts of the agent."""
        self._lock = threading.Lock()
        self._marker = marker
        self._epoch = 0
        self._posted = False
        self._open = False
        self._fenced = marker is not None and marker.exists()

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def fenced(self) -> bool:
        """Whether the host fenced itself and has not reopened since."""
        return self._fenced

    def may_start(self) -> bool:
        return self._open

    def fence(self) -> bool:
        """Close; False if it was fenced already."""
        with self._lock:
            if self._fenced:
                return False
            self._epoch += 1
            self._posted = self._open = False
            self._fenced = True
            if self._marker is not None:
                with contextlib.suppress(OSError):
                    self._marker.write_text(f"{time.time()}\n")
            return True

    def posted(self, epoch: int) -> None:
        """A status POST succeeded; `epoch` is the gate's when the status was made."""
        with self._lock:
            if epoch == self._epoch:
                self._posted = True

    def failed(self) -> None:
        """A call to the control plane failed: the POST before it counts no more. The
        GET that opens the gate must be the call right after the POST, so that the
        control plane cannot have given the host up in between."""
        with self._lock:
            self._posted = False

    def fetched(self, epoch: int) -> None:
        """A desired state came from a GET that began in `epoch`: after a successful
        POST of the same epoch, it opens the gate."""
        with self._lock:
            if epoch != self._epoch or not self._posted or self._open:
                return
            self._open = True
            self._fenced = False
            if self._marker is not None:
                self._marker.unlink(missing_ok=True)


class Watchdog:
    """Probes the peers, answers theirs, and fences the host when it must."""

    def __init__(
        self,
        vms_root: Path,
        underlay_address: str,
        *,
        state_dir: Path | None = None,
        port: int = PROBE_PORT,
        clock: Callable[[], float] = lambda: time.clock_gettime(time.CLOCK_BOOTTIME),
        check_interval: float = CHECK_INTERVAL,
        probe_interval: float = PROBE_INTERVAL,
    ) -> None:
        """`state_dir`: where the watch and the fence outlive the agent (None: nowhere).
        `clock`: seconds that also count while the machine is suspended (CLOCK_BOOTTIME):
        a host that wakes after its fence time has not reached anyone for that long."""
        self.vms_root = vms_root
        self.address = underlay_address
        self.port = port
        self.check_interval = check_interval
        self.probe_interval = probe_interval
        self._clock = clock
        self._watch_file = state_dir / WATCH_FILE if state_dir else None
        self.gate = Gate(state_dir / FENCED_FILE if state_dir else None)
        self._lock = threading.Lock()
        self._book = PeerBook()
        self._peers: list[Peer] = []
        self._fence_seconds: float | None = None
        self._reached_at = clock()
        self._persisted_at = -math.inf
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._responder = Responder(underlay_address, port, on_question=self._asked)
        self._answering = self._answer_failed = False
        self._prober: Prober | None = None
        self._restore()

    @classmethod
    def resumed(cls, vms_root: Path, state_dir: Path) -> Watchdog | None:
        """The watchdog an earlier agent on this host left a watch for, on the underlay
        address it had; None if there is none."""
        try:
            address = str(json.loads((state_dir / WATCH_FILE).read_text())["address"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return cls(vms_root, address, state_dir=state_dir)

    # What the agent tells it

    def watch(self, peers: Sequence[Peer], fence_seconds: float | None) -> None:
        """Watch `peers` and fence after `fence_seconds`, as the last desired state says."""
        with self._lock:
            changed = (list(peers), fence_seconds) != (self._peers, self._fence_seconds)
            self._book.watch(peers, self._clock())
            self._peers, self._fence_seconds = list(peers), fence_seconds
        if changed:
            self._persist(force=True)

    def reached(self, at: float) -> None:
        """A call to the control plane that began at `at` (this watchdog's clock)
        succeeded. The start, not the answer: the control plane may have taken its
        note of the host any time after the call began."""
        with self._lock:
            self._reached_at = max(self._reached_at, at)
        self._persist()

    def now(self) -> float:
        return self._clock()

    def seen(self) -> list[PeerSeen]:
        with self._lock:
            return self._book.seen(self._clock())

    def _asked(self, source: str) -> None:
        """The responder answered a question from `source` (its thread)."""
        with self._lock:
            self._book.asked(source, self._clock())

    # The thread

    def start(self) -> None:
        self._answer()
        self._prober = Prober(self.address, self.port)
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
        self._thread.start()

    def _answer(self) -> None:
        """Start answering probes; tried again each round until it works (the underlay
        address may come later than the agent)."""
        try:
            self._responder.start()
        except OSError as error:
            if not self._answer_failed:
                log.error(
                    "cannot answer probes on [%s]:%d (%s): peers see this host silent",
                    self.address,
                    self.port,
                    error,
                )
            self._answer_failed = True
        else:
            self._answering = True
            if self._answer_failed:
                log.info("answering probes on [%s]:%d", self.address, self.port)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._responder.stop()
        if self._prober is not None:
            self._prober.close()
            self._prober = None

    def _run(self) -> None:
        prober = self._prober
        assert prober is not None
        next_probe = self._clock()
        while not self._stop.is_set():
            try:
                if self._clock() >= next_probe:
                    if not self._answering:
                        self._answer()
                    with self._lock:
                        questions = self._book.questions(self._clock())
                    prober.send(questions)
                    next_probe = self._clock() + self.probe_interval
                self.check(self._clock())
                wait = min(self.check_interval, max(0.0, next_probe - self._clock()))
                answers = prober.receive(wait, self._clock)
                with self._lock:
                    for source, datagram, at in answers:
                        self._book.take(source, datagram, at)
            except Exception:  # the watchdog must outlive any one failure
                log.exception("the watchdog's round failed")
                self._stop.wait(self.check_interval)

    def check(self, now: float) -> bool:
        """One look: fence if the host must; while fenced, kill any VM that runs (one
        started in a race with the fence). Whether it fenced now."""
        if self.gate.fenced:
            if killed := kill_all(self.vms_root):
                log.error("fenced: killed VMs %s", ", ".join(killed))
            return False
        with self._lock:
            fence_seconds, watched = self._fence_seconds, self._book.watched
            reachable = self._book.reachable(now, fence_seconds or 0.0)
            fence = must_fence(now, self._reached_at, fence_seconds, watched, reachable)
            silent_for = now - self._reached_at
        if not fence or not self.gate.fence():
            return False
        killed = kill_all(self.vms_root)
        log.error(
            "fenced: no control plane for %.1f s and %d of %d peers reachable; "
            "killed VMs: %s; starting none until the control plane answers",
            silent_for,
            reachable,
            watched,
            ", ".join(killed) or "none",
        )
        return True

    # On disk

    def _persist(self, *, force: bool = False) -> None:
        if self._watch_file is None:
            return
        now = self._clock()
        if not force and now - self._persisted_at < PERSIST_EVERY:
            return
        self._persisted_at = now
        with self._lock:
            data = {
                "address": self.address,
                "fence_seconds": self._fence_seconds,
                "peers": [peer.model_dump() for peer in self._peers],
                "reached_at": time.time() - (now - self._reached_at),
            }
        try:
            write_atomically(self._watch_file, json.dumps(data))
        except OSError as error:
            log.warning("cannot write %s: %s", self._watch_file, error)

    def _restore(self) -> None:
        """Take up the watch an earlier agent left, and count the time since it last
        reached the control plane from then, not from now."""
        if self._watch_file is None:
            return
        try:
            data = json.loads(self._watch_file.read_text())
            peers = [Peer.model_validate(peer) for peer in data["peers"]]
            fence_seconds = None if data["fence_seconds"] is None else float(data["fence_seconds"])
            reached_wall = float(data["reached_at"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        if fence_seconds is not None and fence_seconds <= 0:
            return
        now = self._clock()
        self._book.watch(peers, now)
        self._peers, self._fence_seconds = peers, fence_seconds
        self._reached_at = now - max(0.0, time.time() - reached_wall)

"""Peer probes over the underlay: is this host still reachable, and are its peers?

Every agent answers probes on `[underlay address]:PROBE_PORT` (the `Responder`, a
thread of its own) and probes the peers the control plane names about every second
(the `Prober`: one non-blocking socket). What it knows of its peers (`PeerBook`) is
plain data with the times given by the caller, so the rules are tested without a
network.

A probe is `MAGIC`, a kind byte and a random nonce; the answer is the same datagram
with the kind byte turned from question to answer, so it is never larger than the
question (no amplification), and a responder never answers an answer (two responders
fooled into probing each other do not echo forever). A peer counts as having answered
only with the nonce of the latest question sent to it, from its own address: a stale
answer (to an earlier question) or a forged one does not count.

Two views of one peer, kept apart:

- Whether this host reaches a peer (`reachable`, for the fence) counts its answers
  only: an answer proves both directions.
- How long a peer has been silent (`seen`, reported to the control plane, which
  declares a host dead when most of its watchers report it silent) counts its answers
  and its questions: anything that proves it alive and reaching this host.

So the two ends cannot disagree: an answer proves the peer reachable as of when its
question was sent (not when the answer came), and the peer heard that question after
it was sent. A peer that reports this host silent for `S` seconds has given this host
no proof newer than `S` seconds, whatever failed: one direction of the link, a
firewall, this host's responder, or a late look at the socket.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import logging
import secrets
import select
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nubis.protocol import PROBE_PORT, Peer, PeerSeen

log = logging.getLogger(__name__)

PROBE_INTERVAL = 1.0
"""How often each peer is probed."""
NEW_PEER_GRACE = 2 * PROBE_INTERVAL
"""A peer that never answered is counted unreachable only once it has had two probes'
time to answer (right after the agent starts, nothing has answered yet)."""
MAGIC = b"nubis-probe/1"
QUESTION = b"?"
ANSWER = b"!"
NONCE_BYTES = 16
PROBE_BYTES = len(MAGIC) + 1 + NONCE_BYTES
_RESPONDER_TICK = 0.2
"""How often the responder looks whether it should stop."""
_DRAIN_MAX = 1024
"""At most this many datagrams are taken at once, so a flood cannot hold the
watchdog's thread away from its checks."""


def question(nonce: bytes) -> bytes:
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"a probe's nonce has {NONCE_BYTES} bytes")
    return MAGIC + QUESTION + nonce


def answer_to(datagram: bytes) -> bytes | None:
    """The answer to a question; None for anything else, answers included."""
    if len(datagram) != PROBE_BYTES or not datagram.startswith(MAGIC + QUESTION):
        return None
    return MAGIC + ANSWER + datagram[len(MAGIC) + 1 :]


def answered_nonce(datagram: bytes) -> bytes | None:
    """The nonce an answer carries; None if it is not an answer."""
    if len(datagram) != PROBE_BYTES or not datagram.startswith(MAGIC + ANSWER):
        return None
    return datagram[len(MAGIC) + 1 :]


def normal_address(address: str) -> str:
    """One spelling per address (`fd00:0::1` and `fd00::1` are one peer); a zone index
    (`%eth0`, from a link-local source) is dropped."""
    bare = address.split("%", 1)[0]
    try:
        return ipaddress.ip_address(bare).compressed
    except ValueError:
        return bare


@dataclass
class _Watched:
    host: str
    since: float
    """When this host began watching the peer."""
    answered: float | None = None
    """When the peer's last answer to one of its questions came in."""
    proved: float | None = None
    """When the question the peer last answered was sent: it reached the peer, and the
    answer came back, after that."""
    sent: float | None = None
    """When the latest question was sent."""
    asked: float | None = None
    """When a question of the peer's last came in."""
    nonce: bytes | None = None
    """The nonce of the latest question, until it is answered."""

    def silent(self, now: float) -> float:
        """Since it last answered or asked (since it was first watched, if never)."""
        heard = [at for at in (self.answered, self.asked) if at is not None]
        return max(0.0, now - max(heard, default=self.since))

    def reachable(self, now: float, within: float) -> bool:
        if self.proved is None:
            return now - self.since < NEW_PEER_GRACE
        return now - self.proved <= within


class PeerBook:
    """What this host knows of the peers it watches, by their underlay address."""

    def __init__(self) -> None:
        self._peers: dict[str, _Watched] = {}

    @property
    def watched(self) -> int:
        return len(self._peers)

    def watch(self, peers: Sequence[Peer], now: float) -> None:
        """Watch exactly `peers` from now on; a peer watched already keeps its history."""
        kept: dict[str, _Watched] = {}
        for peer in peers:
            address = normal_address(peer.address)
            known = self._peers.get(address)
            if known is not None and known.host == peer.host:
                kept[address] = known
            else:
                kept[address] = _Watched(peer.host, now)
        self._peers = kept

    def questions(
        self, now: float, nonce: Callable[[], bytes] = lambda: secrets.token_bytes(NONCE_BYTES)
    ) -> list[tuple[str, bytes]]:
        """A new question for every peer, each with a nonce of its own, to be sent at
        `now`; an earlier question left unanswered will no longer count."""
        asked = []
        for address, peer in self._peers.items():
            peer.nonce, peer.sent = nonce(), now
            asked.append((address, question(peer.nonce)))
        return asked

    def take(self, address: str, datagram: bytes, now: float) -> bool:
        """Take a datagram that came from `address`; whether it counted as an answer."""
        peer = self._peers.get(normal_address(address))
        nonce = answered_nonce(datagram)
        if peer is None or nonce is None or peer.nonce is None:
            return False
        if not hmac.compare_digest(nonce, peer.nonce):
            return False
        peer.answered, peer.proved, peer.nonce = now, peer.sent, None
        return True

    def asked(self, address: str, now: float) -> bool:
        """A question came from `address` (and was answered); whether it is a peer's."""
        peer = self._peers.get(normal_address(address))
        if peer is None:
            return False
        peer.asked = now
        return True

    def seen(self, now: float) -> list[PeerSeen]:
        """For each peer, how long it has been silent: neither answered nor asked."""
        return [
            PeerSeen(host=peer.host, silent_seconds=round(peer.silent(now), 3))
            for peer in self._peers.values()
        ]

    def reachable(self, now: float, within: float) -> int:
        """How many peers answered a question sent within the last `within` seconds
        (or are too newly watched to have answered yet). A question from a peer does
        not count: it proves only that the peer reaches this host."""
        return sum(peer.reachable(now, within) for peer in self._peers.values())


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


class Responder:
    """Answers peers' probes on `[address]:port`, in a thread of its own; tells
    `on_question` the source address of each question it answered."""

    def __init__(
        self,
        address: str,
        port: int = PROBE_PORT,
        on_question: Callable[[str], object] = lambda source: None,
    ) -> None:
        self.address = address
        self.port = port
        self._on_question = on_question
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind (an OSError if the address or the port cannot be had), then answer."""
        listener = socket.socket(_family(self.address), socket.SOCK_DGRAM)
        try:
            listener.bind((self.address, self.port))
        except OSError:
            listener.close()
            raise
        listener.settimeout(_RESPONDER_TICK)
        self._thread = threading.Thread(
            target=self._serve, args=(listener,), name="probe-responder", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _serve(self, listener: socket.socket) -> None:
        with listener:
            while not self._stop.is_set():
                try:
                    # One byte more than a probe: a longer datagram arrives cut, and is
                    # then too long to be a question.
                    datagram, source = listener.recvfrom(PROBE_BYTES + 1)
                except TimeoutError:
                    continue
                except OSError as error:  # e.g. the link went down: wait and go on
                    log.debug("probe responder: %s", error)
                    self._stop.wait(_RESPONDER_TICK)
                    continue
                answer = answer_to(datagram)
                if answer is None:
                    continue
                with contextlib.suppress(OSError):
                    listener.sendto(answer, source)
                try:
                    self._on_question(str(source[0]))
                except Exception:  # the responder must outlive any one failure
                    log.exception("probe responder: noting a question failed")


class Prober:
    """Sends this host's questions to its peers and takes their answers, through one
    non-blocking socket bound to the underlay address (so answers come back to it).
    What the datagrams mean is the `PeerBook`'s business."""

    def __init__(self, address: str, port: int = PROBE_PORT) -> None:
        self.port = port
        self._socket = socket.socket(_family(address), socket.SOCK_DGRAM)
        self._socket.setblocking(False)
        try:
            self._socket.bind((address, 0))
        except OSError as error:  # the kernel then picks the source address
            log.warning("cannot probe from %s (%s); probing from any address", address, error)

    def send(self, questions: Sequence[tuple[str, bytes]]) -> None:
        for address, datagram in questions:
            # A peer that cannot be sent to (no route, link down) stays silent.
            with contextlib.suppress(OSError):
                self._socket.sendto(datagram, (address, self.port))

    def receive(self, timeout: float, clock: Callable[[], float]) -> list[tuple[str, bytes, float]]:
        """What came within `timeout` seconds (at least what came already): each
        datagram with its source address and when it was taken."""
        ready, _, _ = select.select([self._socket], [], [], max(0.0, timeout))
        taken: list[tuple[str, bytes, float]] = []
        if not ready:
            return taken
        for _ in range(_DRAIN_MAX):
            try:
                datagram, source = self._socket.recvfrom(PROBE_BYTES + 1)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # e.g. an ICMP error for an earlier question
                continue
            taken.append((str(source[0]), datagram, clock()))
        return taken

    def close(self) -> None:
        self._socket.close()

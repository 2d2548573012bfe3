"""Peer probes: the datagrams, the nonce check, and what a host knows of its peers."""

from __future__ import annotations

import socket
import time

import pytest

from nubis.agent.peers import (
    NEW_PEER_GRACE,
    NONCE_BYTES,
    PROBE_BYTES,
    PeerBook,
    Prober,
    Responder,
    answer_to,
    answered_nonce,
    question,
)
from nubis.protocol import Peer

NONCE = bytes(range(NONCE_BYTES))
H2 = Peer(host="host-2", address="fd00::2")
H3 = Peer(host="host-3", address="fd00::3")


def nonces(*values: int) -> list[bytes]:
    return [bytes([value]) * NONCE_BYTES for value in values]


def asked(book: PeerBook, value: int, at: float = 0.0) -> dict[str, bytes]:
    """Ask every peer at `at`, each question with the nonce `value`; the questions by
    address."""
    return dict(book.questions(at, lambda: nonces(value)[0]))


def test_the_answer_is_the_question_turned_and_never_larger() -> None:
    probe = question(NONCE)
    answer = answer_to(probe)
    assert answer is not None
    assert len(answer) == len(probe) == PROBE_BYTES
    assert answered_nonce(answer) == NONCE


@pytest.mark.parametrize(
    "datagram",
    [
        b"",
        b"hello",
        question(NONCE) + b"x",
        question(NONCE)[:-1],
        b"other-probe/1?" + NONCE,
    ],
)
def test_the_responder_ignores_what_is_not_a_probe(datagram: bytes) -> None:
    assert answer_to(datagram) is None


def test_an_answer_is_never_answered() -> None:
    # Two responders made to probe each other with a forged source must not echo forever.
    answer = answer_to(question(NONCE))
    assert answer is not None
    assert answer_to(answer) is None


def test_an_answer_with_the_latest_nonce_counts() -> None:
    book = PeerBook()
    book.watch([H2], now=0.0)
    probe = asked(book, 1)["fd00::2"]
    answer = answer_to(probe)
    assert answer is not None
    assert book.take("fd00::2", answer, now=0.1)
    assert book.seen(now=0.6)[0].silent_seconds == 0.5


def test_a_stale_answer_does_not_count() -> None:
    book = PeerBook()
    book.watch([H2], now=0.0)
    earlier = answer_to(asked(book, 1)["fd00::2"])
    asked(book, 2)
    assert earlier is not None
    assert not book.take("fd00::2", earlier, now=1.5)
    assert book.seen(now=2.0)[0].silent_seconds == 2.0


def test_a_forged_answer_does_not_count() -> None:
    book = PeerBook()
    book.watch([H2], now=0.0)
    asked(book, 1)
    forged = answer_to(question(nonces(9)[0]))
    assert forged is not None
    assert not book.take("fd00::2", forged, now=0.1)


def test_an_answer_from_another_address_does_not_count() -> None:
    book = PeerBook()
    book.watch([H2, H3], now=0.0)
    each = iter(nonces(2, 3))
    answer = answer_to(dict(book.questions(0.0, lambda: next(each)))["fd00::2"])
    assert answer is not None
    assert not book.take("fd00::99", answer, now=0.1)
    assert not book.take("fd00::3", answer, now=0.1)
    assert book.take("fd00::2", answer, now=0.1)
    silent = {seen.host: seen.silent_seconds for seen in book.seen(now=1.0)}
    assert silent == {"host-2": 0.9, "host-3": 1.0}


def test_an_answer_counts_once() -> None:
    book = PeerBook()
    book.watch([H2], now=0.0)
    answer = answer_to(asked(book, 1)["fd00::2"])
    assert answer is not None
    assert book.take("fd00::2", answer, now=0.1)
    assert not book.take("fd00::2", answer, now=5.0)
    assert book.seen(now=5.0)[0].silent_seconds == 4.9


def test_an_address_counts_however_it_is_spelt() -> None:
    book = PeerBook()
    book.watch([Peer(host="host-2", address="fd00:0:0::0002")], now=0.0)
    answer = answer_to(asked(book, 1)["fd00::2"])
    assert answer is not None
    assert book.take("fd00::2", answer, now=0.1)


def test_a_peer_that_never_answered_is_silent_since_it_was_first_watched() -> None:
    book = PeerBook()
    book.watch([H2], now=10.0)
    assert book.seen(now=14.0)[0].silent_seconds == 4.0


def test_a_new_peer_counts_as_reachable_only_until_it_could_have_answered() -> None:
    book = PeerBook()
    book.watch([H2], now=0.0)
    assert book.reachable(now=NEW_PEER_GRACE - 0.1, within=10.0) == 1
    assert book.reachable(now=NEW_PEER_GRACE, within=10.0) == 0


def test_a_peer_is_reachable_while_it_answered_a_question_sent_within_the_time() -> None:
    book = PeerBook()
    book.watch([H2], now=0.0)
    answer = answer_to(asked(book, 1, at=1.0)["fd00::2"])
    assert answer is not None
    # Taken late (the socket was read late): it proves the peer as of the question.
    book.take("fd00::2", answer, now=2.5)
    assert book.reachable(now=4.0, within=3.0) == 1
    assert book.reachable(now=4.1, within=3.0) == 0


def test_a_peer_that_asks_is_heard_but_not_reachable() -> None:
    # Its questions come in, the answers to this host's do not: it is not silent (it
    # reaches this host, and its own view of this host counts what it hears), but this
    # host cannot count it for its fence.
    book = PeerBook()
    book.watch([H2], now=0.0)
    asked(book, 1, at=5.0)
    assert book.asked("fd00:0::2", now=5.5)
    assert not book.asked("fd00::99", now=5.5)
    assert book.seen(now=6.0)[0].silent_seconds == 0.5
    assert book.reachable(now=6.0, within=3.0) == 0


@pytest.mark.parametrize(
    "fates",
    [
        "aaaaqqqq",  # the link goes down: questions lost from the 5th on
        "aaaa----",  # answers lost from the 5th on (one direction, or a firewall)
        "a-a-qq--",  # a mix
        "--------",  # no answer ever came back
    ],
)
def test_a_peer_never_reports_this_host_silent_for_longer_than_this_host_counts_on_it(
    fates: str,
) -> None:
    # This host's book and the book of the peer that watches it, with a question each
    # second; each letter is one question's fate: `a` answered and back, `-` heard by
    # the peer but its answer lost, `q` the question lost. Whatever was lost, when the
    # peer reports this host silent for S seconds, this host counts the peer for its
    # fence for no more than S seconds.
    here, there = PeerBook(), PeerBook()
    here.watch([H2], now=0.0)
    there.watch([Peer(host="host-1", address="fd00::1")], now=0.0)
    for second, fate in enumerate(fates, start=1):
        probe = asked(here, second, at=float(second))["fd00::2"]
        if fate == "q":
            continue
        there.asked("fd00::1", now=second + 0.3)
        answer = answer_to(probe)
        assert answer is not None
        if fate == "a":
            assert here.take("fd00::2", answer, now=second + 0.9)
    for now in (len(fates) + 0.5, len(fates) + 3.0, len(fates) + 12.0):
        silent = there.seen(now)[0].silent_seconds
        for within in (0.5, 1.0, 2.0, 4.0, 8.0, 16.0):
            if here.reachable(now, within):
                assert silent <= within, (now, within, silent)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_a_prober_hears_a_responder_over_a_real_socket() -> None:
    port = _free_udp_port()
    responder = Responder("127.0.0.1", port)
    responder.start()
    prober = Prober("127.0.0.1", port)
    try:
        book = PeerBook()
        book.watch([Peer(host="host-1", address="127.0.0.1")], now=time.monotonic())
        deadline = time.monotonic() + 5.0
        while not book.reachable(time.monotonic(), within=0.5) or not any(
            seen.silent_seconds < 0.5 for seen in book.seen(time.monotonic())
        ):
            assert time.monotonic() < deadline, "no answer"
            prober.send(book.questions(time.monotonic()))
            for source, datagram, at in prober.receive(0.2, time.monotonic):
                book.take(source, datagram, at)
    finally:
        prober.close()
        responder.stop()


def test_a_responder_does_not_answer_a_datagram_longer_than_a_probe() -> None:
    port = _free_udp_port()
    responder = Responder("127.0.0.1", port)
    responder.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(0.5)
            client.sendto(question(NONCE) + bytes(1000), ("127.0.0.1", port))
            with pytest.raises(TimeoutError):
                client.recvfrom(4096)
            client.sendto(question(NONCE), ("127.0.0.1", port))
            answer, _ = client.recvfrom(4096)
            assert answered_nonce(answer) == NONCE
    finally:
        responder.stop()

"""The console port relays a connection to a VM's console socket for a grant sealed
with the host's key, once, in time; a forged, late or replayed grant reaches nothing."""

from __future__ import annotations

import random
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nubis.agent.console_relay import ConsoleRelay
from nubis.console_grant import Grant, host_key, seal
from nubis.protocol import ConsoleKind
from tests.capitals import serve_capitals

KEY = host_key("nubis_host_test-credential")
VM = "vm-01m99test"
NOW = 1_800_000_000.0


@pytest.fixture
def vms_root() -> Iterator[Path]:
    # Short: a unix socket's path has at most 107 bytes.
    with tempfile.TemporaryDirectory(prefix="cr", dir="/tmp") as root:
        yield Path(root)


@pytest.fixture
def serial(vms_root: Path) -> Iterator[Path]:
    """A VM's serial socket whose guest answers in capitals."""
    path = vms_root / VM / "serial.sock"
    server = serve_capitals(path)
    yield path
    server.close()


@pytest.fixture
def relay(vms_root: Path) -> Iterator[ConsoleRelay]:
    # A loopback address of its own, so that tests side by side share no port.
    address = f"127.{random.randrange(1, 255)}.{random.randrange(1, 255)}.1"
    relay = ConsoleRelay(vms_root, address, KEY, port=0, clock=lambda: NOW)
    relay.start()
    yield relay
    relay.stop()


def _open(relay: ConsoleRelay, line: bytes) -> tuple[socket.socket, bytes]:
    connection = socket.create_connection((relay.address, relay.port), timeout=5)
    connection.sendall(line)
    answer = b""
    while not answer.endswith(b"\n"):
        got = connection.recv(1)
        if not got:
            break
        answer += got
    return connection, answer


def test_a_sealed_grant_reaches_the_vm_s_serial_console_once(
    relay: ConsoleRelay, serial: Path
) -> None:
    line = seal(KEY, Grant(VM, ConsoleKind.SERIAL, int(NOW) + 30, "n1"))

    connection, answer = _open(relay, line)
    connection.sendall(b"echo hi\n")
    echoed = connection.recv(1024)
    again, refused = _open(relay, line)

    assert answer == b"ok\n"
    assert echoed == b"ECHO HI\n"
    assert refused == b""
    connection.close()
    again.close()


@pytest.mark.parametrize(
    ("key", "expires_at", "vm"),
    [
        (host_key("nubis_host_another-host"), int(NOW) + 30, VM),
        (KEY, int(NOW) - 1, VM),
        (KEY, int(NOW) + 30, "../etc"),
    ],
    ids=["another-host-s-key", "late", "not-a-vm-id"],
)
def test_a_forged_late_or_garbled_grant_reaches_nothing(
    relay: ConsoleRelay, serial: Path, key: str, expires_at: int, vm: str
) -> None:
    line = seal(key, Grant(vm, ConsoleKind.SERIAL, expires_at, "n2"))

    connection, answer = _open(relay, line)

    assert answer == b""
    connection.close()


def test_a_vm_without_a_console_socket_is_unavailable(relay: ConsoleRelay, serial: Path) -> None:
    line = seal(KEY, Grant(VM, ConsoleKind.VNC, int(NOW) + 30, "n3"))

    connection, answer = _open(relay, line)

    assert answer == b"unavailable\n"
    connection.close()

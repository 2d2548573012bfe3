"""The console port: the control plane connects, sends a console grant, and from then
on the connection is spliced to the VM's serial or VNC unix socket.

The sockets stay unix sockets that only root on the host can open; this port reaches
them for a grant the control plane sealed (see `nubis.console_grant`), each grant once.
A console ends when either side closes: the user leaving, or QEMU going away (the VM
stopped, deleted or moved).
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from pathlib import Path

from nubis.agent.qemu import QemuError
from nubis.agent.qemu.paths import VmPaths
from nubis.console_grant import MAX_LINE, Grant, GrantRefused, unseal
from nubis.protocol import CONSOLE_PORT, ConsoleKind

log = logging.getLogger(__name__)

GRANT_WAIT_SECONDS = 5.0
"""How long a new connection has to send its grant."""
CHUNK = 64 * 1024


class ConsoleRelay:
    """Serves the console port on `address` for grants sealed with `key`."""

    def __init__(
        self,
        vms_root: Path,
        address: str,
        key: str,
        *,
        port: int = CONSOLE_PORT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.vms_root = vms_root
        self.address = address
        self.key = key
        self._clock = clock
        self._used: dict[str, int] = {}
        """Nonces of the grants used, until their time is up (a grant is good once)."""
        self._lock = threading.Lock()
        relay = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                relay._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            address_family = socket.AF_INET6 if ":" in address else socket.AF_INET
            allow_reuse_address = True
            daemon_threads = True

        self._server = Server((address, port), Handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="console-relay", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _serve(self, connection: socket.socket) -> None:
        connection.settimeout(GRANT_WAIT_SECONDS)
        try:
            grant = self._admit(_line(connection))
            target = self._socket_of(grant)
            vm = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            vm.connect(str(target))
        except GrantRefused as refused:
            log.warning("console connection refused: %s", refused)
            return
        except OSError as error:
            log.info("console unavailable: %s", error)
            _send(connection, b"unavailable\n")
            return
        with vm:
            connection.settimeout(None)
            _send(connection, b"ok\n")
            _splice(connection, vm)

    def _admit(self, line: bytes) -> Grant:
        now = self._clock()
        grant = unseal(self.key, line, now)
        with self._lock:
            self._used = {nonce: until for nonce, until in self._used.items() if until >= now}
            if grant.nonce in self._used:
                raise GrantRefused("the grant was used before")
            self._used[grant.nonce] = grant.expires_at
        return grant

    def _socket_of(self, grant: Grant) -> Path:
        try:
            paths = VmPaths.of(self.vms_root, grant.vm_id)
        except QemuError as error:
            raise GrantRefused(str(error)) from None
        return paths.vnc if grant.kind is ConsoleKind.VNC else paths.serial_socket


def _line(connection: socket.socket) -> bytes:
    """The first line, read a byte at a time so nothing after it is taken."""
    line = b""
    while not line.endswith(b"\n"):
        byte = connection.recv(1)
        if not byte or len(line) >= MAX_LINE:
            raise GrantRefused("no grant line")
        line += byte
    return line


def _send(connection: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        connection.sendall(data)


def _splice(one: socket.socket, other: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    peer = {one: other, other: one}
    with selectors.DefaultSelector() as selector:
        for end in peer:
            selector.register(end, selectors.EVENT_READ, end)
        while True:
            for key, _ in selector.select():
                side: socket.socket = key.data
                try:
                    data = side.recv(CHUNK)
                    if not data:
                        return
                    peer[side].sendall(data)
                except OSError:
                    return

"""The metadata service: an HTTP server that answers each VM as itself.

It listens on the host's bridge at 169.254.169.254:80 and [fe80::a9fe:a9fe]:80 and
knows a VM by the port its request came in on, never by anything in the request:

1. the guard (`guard.py`) marks every frame from a VM's tap with the VM's mark;
2. with `net.ipv4.tcp_fwmark_accept=1` (which covers IPv6 too) a socket accepted for
   a SYN takes the SYN's mark, so `getsockopt(SO_MARK)` on it names the VM whose port
   the connection was opened from;
3. `lookup(mark)` gives that VM's spec, or None: then every path answers 403.

The answers carry the same mark, and the guard lets them out only through the VM's
own taps. Both sockets are bound to the bridge (SO_BINDTODEVICE): the IPv4 replies then
leave by the bridge although the host has no route to the guest's 169.254/16 address,
and one host can later run a service per bridge on the same address and port.

What it answers to each path is `metadata_answers`.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from nubis.addresses import METADATA_IPV4, METADATA_IPV6, mark_of
from nubis.agent.net.metadata_answers import NetworkLookup, answer, no_networks
from nubis.protocol import VmSpec

log = logging.getLogger(__name__)

Lookup = Callable[[int], VmSpec | None]

PORT = 80
CONNECTIONS_PER_VM = 16
"""Requests one VM may have in flight; past that its new connections are closed, so a
VM cannot tie up the agent with threads."""
REQUEST_TIMEOUT = 10.0
"""Seconds a connection may take to send its request."""


def by_mark(vms: Iterable[VmSpec]) -> dict[int, VmSpec]:
    """Each VM under its mark, for a `lookup`.

    Two VMs whose ids hash to one mark are both left out: serving either could hand
    one of them the other's keys and user data.
    """
    vms = list(vms)
    counts = Counter(mark_of(vm.id) for vm in vms)
    for vm in vms:
        if counts[mark_of(vm.id)] > 1:
            log.error("VM %s shares its mark with another VM: no metadata for it", vm.id)
    return {mark_of(vm.id): vm for vm in vms if counts[mark_of(vm.id)] == 1}


def socket_mark(connection: socket.socket) -> int:
    """The mark a connection was accepted with (0: none)."""
    # getsockopt answers a C int: a mark past 2**31 comes back negative.
    return connection.getsockopt(socket.SOL_SOCKET, socket.SO_MARK) & 0xFFFF_FFFF


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT
    server_version = "nubis-metadata"
    sys_version = ""

    def _reply(self) -> None:
        mark = socket_mark(self.connection)
        vm = self.server.lookup(mark) if mark else None
        result = answer(self.command, self.path, vm, self.server.network_of)
        self.send_response(result.status)
        self.send_header("Content-Type", result.content_type)
        self.send_header("Content-Length", str(len(result.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(result.body)

    # http.server finds a method's handler by this naming.
    def do_GET(self) -> None:
        self._reply()

    def do_HEAD(self) -> None:
        self._reply()

    def do_PUT(self) -> None:
        self._reply()

    def do_POST(self) -> None:
        self._reply()

    def do_DELETE(self) -> None:
        self._reply()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class _Server(HTTPServer):
    """One listening socket; a thread per request, at most CONNECTIONS_PER_VM per mark."""

    # The agent restarts and binds again while old connections sit in TIME_WAIT.
    allow_reuse_address = True

    def __init__(
        self,
        family: socket.AddressFamily,
        address: tuple[Any, ...],
        bridge: str,
        lookup: Lookup,
        network_of: NetworkLookup,
    ) -> None:
        self.address_family = family
        self.bridge = bridge
        self.lookup = lookup
        self.network_of = network_of
        self._busy: Counter[int] = Counter()
        self._busy_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.bridge.encode())
        # Not HTTPServer.server_bind: it looks the address up in DNS, which may hang.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        mark = socket_mark(request)
        with self._busy_lock:
            if self._busy[mark] >= CONNECTIONS_PER_VM:
                log.warning("port with mark %#x has too many metadata requests open", mark)
                self.shutdown_request(request)
                return
            self._busy[mark] += 1
        thread = threading.Thread(
            target=self._serve, args=(request, client_address, mark), daemon=True
        )
        thread.start()

    def _serve(self, request: Any, client_address: Any, mark: int) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._busy_lock:
                self._busy[mark] -= 1
                if self._busy[mark] <= 0:
                    del self._busy[mark]

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("metadata request from %s failed", client_address)


class MetadataService:
    """The metadata service on one bridge; `lookup` is asked afresh for every request,
    so whoever owns it changes what is served without restarting anything."""

    def __init__(
        self,
        bridge: str,
        lookup: Lookup,
        port: int = PORT,
        network_of: NetworkLookup = no_networks,
    ) -> None:
        self.bridge = bridge
        self.lookup = lookup
        self.network_of = network_of
        self.port = port
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Listen on both addresses. The bridge must have them (`links.ensure_bridge`),
        and `net.ipv4.tcp_fwmark_accept` must be 1 (`links.ensure_bridge` sets it)."""
        if self._servers:
            return
        scope = socket.if_nametoindex(self.bridge)
        try:
            self._servers.append(
                _Server(
                    socket.AF_INET,
                    (METADATA_IPV4, self.port),
                    self.bridge,
                    self.lookup,
                    self.network_of,
                )
            )
            self._servers.append(
                _Server(
                    socket.AF_INET6,
                    (METADATA_IPV6, self.port, 0, scope),
                    self.bridge,
                    self.lookup,
                    self.network_of,
                )
            )
        except BaseException:
            self.stop()
            raise
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.2},
                name=f"metadata-{self.bridge}-{server.server_name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        for server, thread in zip(self._servers, self._threads, strict=False):
            server.shutdown()
            thread.join()
        for server in self._servers:
            server.server_close()
        self._servers.clear()
        self._threads.clear()

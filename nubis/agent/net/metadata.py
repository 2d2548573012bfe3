"""The metadata service: what cloud-init asks a cloud for, answered per VM.

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

Paths served (any EC2 version, `latest` or a date, gives the same answers; so does any
OpenStack version):

    /                                       EC2 versions
    /latest/meta-data/                      instance-id, hostname, local-hostname, public-keys/
    /latest/meta-data/public-keys/          0=key-0 ...
    /latest/meta-data/public-keys/0/openssh-key
    /latest/user-data                       404 when the VM has none
    PUT /latest/api/token                   an IMDSv2 token, for clients that insist on one;
                                            it is never checked: the port is the credential
    /openstack/                             OpenStack versions
    /openstack/latest/meta_data.json        uuid, name, hostname, public_keys
    /openstack/latest/user_data             404 when the VM has none
    /openstack/latest/network_data.json     each NIC's link and how it gets its address
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import secrets
import socket
import socketserver
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from nubis.addresses import METADATA_IPV4, METADATA_IPV6, mark_of
from nubis.protocol import Ipam, Network, VmSpec

log = logging.getLogger(__name__)

Lookup = Callable[[int], VmSpec | None]
NetworkLookup = Callable[[str], Network | None]
"""A project network by its id (for a NIC's gateway), or None."""


def _no_networks(network_id: str) -> Network | None:
    return None


PORT = 80
CONNECTIONS_PER_VM = 16
"""Requests one VM may have in flight; past that its new connections are closed, so a
VM cannot tie up the agent with threads."""
REQUEST_TIMEOUT = 10.0
"""Seconds a connection may take to send its request."""

_VERSION = re.compile(r"^(latest|\d{4}-\d{2}-\d{2})$")
"""A version of EC2's or OpenStack's metadata API: all answer alike."""


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


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"


def _text(body: str) -> Answer:
    return Answer(200, body.encode())


def _listing(*names: str) -> Answer:
    return _text("".join(f"{name}\n" for name in names))


def _json(value: dict[str, Any]) -> Answer:
    return Answer(200, json.dumps(value, indent=2).encode(), "application/json")


NOT_FOUND = Answer(404, b"not found\n")
UNKNOWN_VM = Answer(403, b"no VM is known on this port\n")
NOT_ALLOWED = Answer(405, b"method not allowed\n")


def _user_data(vm: VmSpec) -> Answer:
    if vm.user_data is None:
        return NOT_FOUND
    return Answer(200, vm.user_data.encode(), "application/octet-stream")


def _ec2_meta_data(vm: VmSpec, rest: list[str]) -> Answer:
    match rest:
        case []:
            names = ["hostname", "instance-id", "local-hostname"]
            return _listing(*names, *(["public-keys/"] if vm.ssh_keys else []))
        case ["instance-id"]:
            return _text(vm.id)
        case ["hostname"] | ["local-hostname"]:
            return _text(vm.hostname)
        case ["public-keys"] if vm.ssh_keys:
            return _listing(*(f"{index}=key-{index}" for index in range(len(vm.ssh_keys))))
        case ["public-keys", index] | ["public-keys", index, "openssh-key"] if (
            index.isdigit() and int(index) < len(vm.ssh_keys)
        ):
            if len(rest) == 2:
                return _listing("openssh-key")
            return _text(vm.ssh_keys[int(index)])
    return NOT_FOUND


def _ec2(vm: VmSpec, rest: list[str]) -> Answer:
    match rest:
        case []:
            return _listing("meta-data/", *(["user-data"] if vm.user_data is not None else []))
        case ["meta-data", *deeper]:
            return _ec2_meta_data(vm, deeper)
        case ["user-data"]:
            return _user_data(vm)
    return NOT_FOUND


def network_data(vm: VmSpec, network_of: NetworkLookup = _no_networks) -> dict[str, Any]:
    """OpenStack's network_data.json: a link per NIC, and how it gets its address.

    The host network's NICs and those of `auto` networks configure themselves by
    SLAAC; the address is given all the same, so that a guest (or a person) can check
    it got the one the cloud handed out. A `manual` network's NIC is told its address
    (`network_of` finds the network); an `ipam none` one only its link. A project
    network's NIC with a prefix also gets a default route through its gateway, for the
    guest to use for packets from that NIC's address.
    """
    links = []
    networks = []
    for index, nic in enumerate(vm.nics):
        link: dict[str, Any] = {"id": nic.tap, "type": "phy", "ethernet_mac_address": nic.mac}
        if nic.mtu is not None:
            link["mtu"] = nic.mtu
        links.append(link)
        if nic.address is None or nic.ipam is Ipam.NONE:
            continue
        prefix = ipaddress.IPv6Interface(f"{nic.address}/64").network
        entry: dict[str, Any] = {
            "id": f"network{index}",
            "link": nic.tap,
            "network_id": str(prefix) if nic.network is None else nic.network,
            "type": "ipv6_slaac",
            "ip_address": nic.address,
            "netmask": str(prefix.netmask),
        }
        if nic.network is not None:
            if nic.ipam is Ipam.MANUAL:
                entry["type"] = "ipv6"
            # The way out for packets from this address (the host network's NIC has the
            # default route; this one is for the replies of what came in here).
            network = network_of(nic.network)
            if network is not None and network.gateway is not None:
                default = {"network": "::", "netmask": "::", "gateway": network.gateway}
                entry["routes"] = [default]
        networks.append(entry)
    return {"links": links, "networks": networks, "services": []}


def _openstack(vm: VmSpec, rest: list[str], network_of: NetworkLookup) -> Answer:
    match rest:
        case []:
            names = ["meta_data.json", "network_data.json"]
            return _listing(*names, *(["user_data"] if vm.user_data is not None else []))
        case ["meta_data.json"]:
            keys = {f"key-{index}": key for index, key in enumerate(vm.ssh_keys)}
            return _json(
                {"uuid": vm.id, "name": vm.hostname, "hostname": vm.hostname, "public_keys": keys}
            )
        case ["network_data.json"]:
            return _json(network_data(vm, network_of))
        case ["user_data"]:
            return _user_data(vm)
    return NOT_FOUND


def answer(
    method: str, path: str, vm: VmSpec | None, network_of: NetworkLookup = _no_networks
) -> Answer:
    """The answer to `method path` from `vm`'s port (None: a port no VM is known on)."""
    if vm is None:
        return UNKNOWN_VM
    parts = [part for part in path.split("?", 1)[0].split("/") if part]
    if method == "PUT":
        if len(parts) == 3 and parts[1:] == ["api", "token"] and _VERSION.match(parts[0]):
            return _text(secrets.token_urlsafe(32))
        return NOT_ALLOWED
    if method not in ("GET", "HEAD"):
        return NOT_ALLOWED
    match parts:
        case []:
            return _listing("2009-04-04", "latest")
        case ["openstack"]:
            return _listing("latest")
        case ["openstack", version, *rest] if _VERSION.match(version):
            return _openstack(vm, rest, network_of)
        case [version, *rest] if _VERSION.match(version):
            return _ec2(vm, rest)
    return NOT_FOUND


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
        network_of: NetworkLookup = _no_networks,
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

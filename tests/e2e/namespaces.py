"""What an e2e cloud makes on this machine, by name: its work directory and its
underlay (a bridge in the root namespace, a namespace per host); and how a run finds
and removes what a killed run left.

Everything of one cloud carries its suffix (4 hex digits): the directory
`/tmp/nbe-<suffix>`, the bridge `e2e<suffix>`, the veths `e2e<suffix>hN` and the
namespaces `nbe-<suffix>-hN`. No link name starts with `nb`, `nx` or `nt`: an agent in
the root namespace (`nubis up`) owns those, and removes the ones it does not want.

The directory is made first and removed last; it holds an `owner` file naming the
process that made the cloud, and a `processes` file naming every process the cloud
started. A suffix whose directory has no living owner is a
leftover of a run that was killed, and the next run removes it, processes included.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.processes import Process

WORK_ROOT = Path("/tmp")
NAMESPACE = re.compile(r"nbe-([0-9a-f]{4})-h\d+")
LINK = re.compile(r"e2e([0-9a-f]{4})(h\d+)?")
WORK_DIR = re.compile(r"nbe-([0-9a-f]{4})")
PARTIAL_DIR = re.compile(r"nbe-([0-9a-f]{4})\.\w+")
OWNER_FILE = "owner"
PROCESSES_FILE = "processes"
UNDERLAY_LINK = "ul0"
PARTIAL_GRACE_SECONDS = 60.0

# ICMPv6 echo with a raw socket: the machine has no `ping`. The kernel fills in the
# checksum of ICMPv6 sent on a raw socket.
PING = """
import os, socket, sys, time
address, timeout = sys.argv[1], float(sys.argv[2])
echo = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
ident = os.getpid() & 0xFFFF
deadline = time.monotonic() + timeout
sequence = 0
while time.monotonic() < deadline:
    sequence += 1
    request = bytes([128, 0, 0, 0]) + ident.to_bytes(2, "big") + sequence.to_bytes(2, "big")
    try:
        echo.sendto(request + b"nubis-e2e", (address, 0))
    except OSError:
        time.sleep(0.2)
        continue
    echo.settimeout(min(0.5, max(deadline - time.monotonic(), 0.01)))
    try:
        while True:
            reply, _ = echo.recvfrom(2048)
            if reply[0] == 129 and reply[4:6] == ident.to_bytes(2, "big"):
                sys.exit(0)
    except (TimeoutError, OSError):
        pass
sys.exit(1)
"""


def run(
    *argv: str, check: bool = True, timeout: float = 30.0, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done


def pids_in(namespace: str) -> list[int]:
    done = run("ip", "netns", "pids", namespace, check=False)
    return [int(pid) for pid in done.stdout.split()] if done.returncode == 0 else []


def kill_everything_in(namespace: str, timeout: float = 10.0) -> None:
    """SIGKILL every process in `namespace` until none is left (one may be forking)."""
    deadline = time.monotonic() + timeout
    while pids := pids_in(namespace):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {pids} in {namespace} do not die")
        time.sleep(0.05)


def namespaces() -> list[str]:
    listed = run("ip", "netns", "list", check=False).stdout.splitlines()
    return [line.split()[0] for line in listed if line.strip()]


def links() -> list[str]:
    """Links of the root namespace, without the `@peer` of veths."""
    listed = run("ip", "-o", "link", "show").stdout.splitlines()
    return [line.split(":")[1].strip().split("@")[0] for line in listed]


def ula_prefix(length: int) -> ipaddress.IPv6Network:
    """A random unique local prefix (RFC 4193) of `length` (48 or longer)."""
    value = (0xFD << 120) | (secrets.randbits(length - 8) << (128 - length))
    return ipaddress.IPv6Network((value, length))


@dataclass(frozen=True)
class Names:
    """The names of one cloud's things."""

    suffix: str

    @property
    def work_dir(self) -> Path:
        return WORK_ROOT / f"nbe-{self.suffix}"

    @property
    def bridge(self) -> str:
        return f"e2e{self.suffix}"

    def namespace(self, host: str) -> str:
        return f"nbe-{self.suffix}-{host}"

    def veth(self, host: str) -> str:
        return f"e2e{self.suffix}{host}"

    def namespaces(self) -> list[str]:
        return [ns for ns in namespaces() if (m := NAMESPACE.fullmatch(ns)) and m[1] == self.suffix]

    def links(self) -> list[str]:
        return [link for link in links() if (m := LINK.fullmatch(link)) and m[1] == self.suffix]


def _owner_of(directory: Path) -> Process | None:
    try:
        data = json.loads((directory / OWNER_FILE).read_text())
        return Process("owner", int(data["pid"]), int(data["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _owned(directory: Path) -> bool:
    owner = _owner_of(directory)
    return owner is not None and owner.alive()


def recorded(directory: Path) -> list[Process]:
    """The processes a cloud wrote down in its directory as it started them."""
    try:
        lines = (directory / PROCESSES_FILE).read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            data = json.loads(line)
            found.append(Process(str(data["name"]), int(data["pid"]), int(data["started"])))
    return found


def record(directory: Path, process: Process) -> None:
    with (directory / PROCESSES_FILE).open("a") as out:
        out.write(
            json.dumps({"name": process.name, "pid": process.pid, "started": process.started})
        )
        out.write("\n")


def claim() -> Names:
    """A suffix no other run has, with its directory and owner file made.

    The directory is made under another name and renamed into place with its owner
    file in it, so no one ever sees it without an owner.
    """
    me = Process.of("owner", os.getpid())
    assert me is not None
    while True:
        names = Names(secrets.token_hex(2))
        partial = Path(tempfile.mkdtemp(prefix=f"nbe-{names.suffix}.", dir=WORK_ROOT))
        (partial / OWNER_FILE).write_text(json.dumps({"pid": me.pid, "started": me.started}))
        try:
            partial.rename(names.work_dir)
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)
            continue
        # Leftovers under this suffix, whose directory was already gone, are dead.
        remove_network(names)
        return names


def remove_network(names: Names) -> None:
    """Kill what runs in the namespaces, then remove them, the veths and the bridge."""
    for namespace in names.namespaces():
        kill_everything_in(namespace)
    for link in names.links():
        if link != names.bridge:
            run("ip", "link", "del", link, check=False)
    if names.bridge in names.links():
        run("ip", "link", "del", names.bridge, check=False)
    for namespace in names.namespaces():
        run("ip", "netns", "del", namespace, check=False)


def sweep_leftovers() -> list[str]:
    """Remove what killed runs left behind; never what a live run owns. The suffixes
    removed."""
    suffixes = {m[1] for ns in namespaces() if (m := NAMESPACE.fullmatch(ns))}
    suffixes |= {m[1] for link in links() if (m := LINK.fullmatch(link))}
    suffixes |= {m[1] for p in WORK_ROOT.iterdir() if (m := WORK_DIR.fullmatch(p.name))}
    removed = []
    for suffix in sorted(suffixes):
        names = Names(suffix)
        if _owned(names.work_dir):
            continue
        for process in recorded(names.work_dir):
            process.kill()
        remove_network(names)
        shutil.rmtree(names.work_dir, ignore_errors=True)
        removed.append(suffix)
    for partial in WORK_ROOT.iterdir():
        if not PARTIAL_DIR.fullmatch(partial.name):
            continue
        owner = _owner_of(partial)
        with contextlib.suppress(OSError):
            # Without an owner file it may be a run that is just making it.
            stale = time.time() - partial.stat().st_mtime > PARTIAL_GRACE_SECONDS
            if (owner is not None and not owner.alive()) or (owner is None and stale):
                shutil.rmtree(partial, ignore_errors=True)
    return removed


@dataclass(frozen=True)
class Underlay:
    """The cloud's underlay: a bridge in the root namespace holding the control plane's
    address, a veth into each host's namespace."""

    names: Names
    network: ipaddress.IPv6Network

    @property
    def plane_address(self) -> str:
        return str(self.network[1])

    def address(self, number: int) -> str:
        return str(self.network[number + 1])

    def make_bridge(self) -> None:
        bridge = self.names.bridge
        run("ip", "link", "add", bridge, "type", "bridge", "forward_delay", "0")
        # No duplicate address detection: nothing else uses this /64, and the addresses
        # are usable at once instead of a second or two later.
        _sysctl(None, f"net.ipv6.conf.{bridge}.accept_dad", "0")
        run("ip", "link", "set", bridge, "up")
        run("ip", "addr", "add", f"{self.plane_address}/64", "dev", bridge, "nodad")

    def add_host(self, name: str, number: int) -> None:
        namespace, veth = self.names.namespace(name), self.names.veth(name)
        run("ip", "netns", "add", namespace)
        run("ip", "-n", namespace, "link", "set", "lo", "up")
        # The host routes its VMs' /64 to the underlay, as a hypervisor does.
        _sysctl(namespace, "net.ipv6.conf.all.forwarding", "1")
        run("ip", "link", "add", veth, "type", "veth", "peer", "name", UNDERLAY_LINK,
            "netns", namespace)  # fmt: skip
        # A bridge port needs no address of its own.
        _sysctl(None, f"net.ipv6.conf.{veth}.disable_ipv6", "1")
        run("ip", "link", "set", veth, "master", self.names.bridge, "up")
        _sysctl(namespace, f"net.ipv6.conf.{UNDERLAY_LINK}.accept_dad", "0")
        address = f"{self.address(number)}/64"
        run("ip", "-n", namespace, "addr", "add", address, "dev", UNDERLAY_LINK, "nodad")
        run("ip", "-n", namespace, "link", "set", UNDERLAY_LINK, "up")

    def route(self, prefix: str, number: int) -> None:
        """Send `prefix` (a host's VM network) from the root namespace to host `number`."""
        via = self.address(number)
        run("ip", "-6", "route", "replace", prefix, "via", via, "dev", self.names.bridge)


def _sysctl(namespace: str | None, key: str, value: str) -> None:
    inside = ("ip", "netns", "exec", namespace) if namespace else ()
    run(*inside, "sysctl", "-q", "-w", f"{key}={value}")


def ping_argv(address: str, timeout: float) -> list[str]:
    return [sys.executable, "-c", PING, address, str(timeout)]


def free_port(address: str) -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        port: int = probe.getsockname()[1]
        return port

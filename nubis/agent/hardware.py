"""What this host is: cores, memory, huge pages, disk, architecture, acceleration."""

from __future__ import annotations

import os
import platform
import shutil
import socket
from pathlib import Path
from urllib.parse import urlsplit

from nubis.protocol import HostReport

HUGEPAGES_1G = Path("/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages")


def physical_cores(cpuinfo: str) -> int:
    """Distinct (package, core) pairs in /proc/cpuinfo; 0 if it does not say."""
    cores: set[tuple[str, str]] = set()
    package = core = ""
    for line in [*cpuinfo.splitlines(), ""]:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            package = value.strip()
        elif key == "core id":
            core = value.strip()
        elif not key and core:
            cores.add((package, core))
            package = core = ""
    return len(cores)


def memory_bytes(meminfo: str) -> int:
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise ValueError("/proc/meminfo has no MemTotal")


def underlay_address(api_url: str) -> str:
    """The local address this host reaches the control plane from (no packet is sent:
    connecting a UDP socket only picks the route)."""
    parts = urlsplit(api_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((host, port))
        address: str = probe.getsockname()[0]
        return address


def acceleration() -> str:
    """`tcg` until a test guest has been seen to boot under KVM.

    /dev/kvm alone proves nothing: on nested machines it exists, answers ioctls, and
    guests hang. Claiming KVM takes booting the tiny guest under it, which comes with
    the guest image; until then every host runs guests under TCG, which always works.
    """
    return "tcg"


def report(name: str, api_url: str, disk_dir: Path, underlay: str | None = None) -> HostReport:
    threads = os.cpu_count() or 1
    cpuinfo = Path("/proc/cpuinfo").read_text()
    hugepages = int(HUGEPAGES_1G.read_text()) if HUGEPAGES_1G.exists() else 0
    disk_dir.mkdir(parents=True, exist_ok=True)
    return HostReport(
        name=name,
        arch=platform.machine(),
        cores=physical_cores(cpuinfo) or threads,
        threads=threads,
        memory_bytes=memory_bytes(Path("/proc/meminfo").read_text()),
        hugepages=hugepages,
        disk_bytes=shutil.disk_usage(disk_dir).total,
        underlay_address=underlay or underlay_address(api_url),
        acceleration=acceleration(),
    )

"""What this host is: cores, memory, huge pages, disk, architecture, acceleration."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import platform
import selectors
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from nubis.agent.qemu.argv import ACCELERATIONS, MACHINE, QEMU
from nubis.guestimage import guest, tiny
from nubis.guestimage.debian import DEB_CACHE
from nubis.protocol import HostReport

log = logging.getLogger(__name__)

HUGEPAGES_1G = Path("/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages")
KVM_DEVICE = Path("/dev/kvm")
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
RUN_DIR = Path("/run/nubis")
VERDICT_FILE = "acceleration.json"
PROBE_LOCK = ".probe.lock"
PROBE_TIMEOUT = 15.0
"""Seconds a probe guest gets to reach userspace under KVM (it needs about one)."""
PROBE_MEMORY_MIB = 256
QUIT_TIMEOUT = 5.0


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


def boots_to_userspace(
    kernel: Path, initrd: Path, accel: str, timeout: float = PROBE_TIMEOUT
) -> bool:
    """Whether QEMU under `accel` boots the tiny guest's probe to userspace within
    `timeout` seconds. Its QEMU is gone when this returns: killed once it has said so,
    or at the timeout.

    Under KVM the CPU is `host`, as VMs get it (see `qemu.argv`): a host where that
    fails does not run VMs under KVM either.
    """
    kvm = accel == "kvm"
    command = [
        # Should this process die mid-probe, a QEMU hung under KVM must not live on.
        "timeout", "--kill-after=2", f"{timeout + 2:g}",
        QEMU, "-name", "nubis-probe", "-no-user-config", "-nodefaults",
        "-machine", MACHINE, "-accel", accel, "-cpu", "host" if kvm else "max",
        "-m", str(PROBE_MEMORY_MIB), "-display", "none", "-no-reboot",
        "-kernel", str(kernel), "-initrd", str(initrd),
        "-append", guest.kernel_arguments(probe=True),
        "-serial", "stdio",
    ]  # fmt: skip
    marker = guest.PROBE_MARKER.encode()
    seen = b""
    with subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ) as qemu:
        assert qemu.stdout is not None
        deadline = time.monotonic() + timeout
        try:
            with selectors.DefaultSelector() as waiting:
                waiting.register(qemu.stdout, selectors.EVENT_READ)
                while marker not in seen and (left := deadline - time.monotonic()) > 0:
                    if not waiting.select(left):
                        continue
                    chunk = os.read(qemu.stdout.fileno(), 65536)
                    if not chunk:
                        break
                    # Enough of the end to find the marker across two reads, and to log.
                    seen = (seen + chunk)[-4096:]
        finally:
            # `timeout` hands SIGTERM on to QEMU, which quits at once even with a vCPU
            # hung in KVM; SIGKILL would stop only `timeout`.
            qemu.terminate()
            try:
                qemu.wait(QUIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                qemu.kill()
                qemu.wait()
    if marker not in seen:
        tail = seen.decode(errors="replace").strip().splitlines()[-3:]
        log.info("the %s probe did not reach userspace: %s", accel, " / ".join(tail) or "silence")
        return False
    return True


def kvm_probe(cache: Path = DEB_CACHE, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether a guest reaches userspace under KVM here (the tiny guest, made once)."""
    kernel, initrd = tiny.boot_files(cache)
    return boots_to_userspace(kernel, initrd, "kvm", timeout)


def decide(kvm_device: bool, probe: Callable[[], bool]) -> tuple[str, str]:
    """`kvm` or `tcg`, and why. KVM only when the device is there and the probe boots:
    on nested machines /dev/kvm can exist, answer ioctls, and guests hang. A probe that
    cannot even run means TCG, which always works."""
    if not kvm_device:
        return "tcg", "there is no /dev/kvm"
    try:
        booted = probe()
    except Exception as error:
        log.warning("the KVM probe could not run: %s", error)
        return "tcg", f"the KVM probe could not run: {error}"
    if booted:
        return "kvm", "a guest reached userspace under KVM"
    return "tcg", f"a guest did not reach userspace under KVM within {PROBE_TIMEOUT:g} s"


def _remembered(path: Path, boot_id: str) -> str | None:
    try:
        verdict = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(verdict, dict) or verdict.get("boot_id") != boot_id:
        return None
    found = verdict.get("acceleration")
    return found if found in ACCELERATIONS else None


def acceleration(
    *,
    state_dir: Path = RUN_DIR,
    probe: Callable[[], bool] | None = None,
    kvm_device: Path = KVM_DEVICE,
    boot_id_file: Path = BOOT_ID,
) -> str:
    """`kvm` if a guest has been seen to boot under KVM on this machine, else `tcg`.

    The verdict holds until the machine reboots: it is kept in `state_dir` with the
    boot id, and made under a lock there, so agents of several namespaces starting at
    once probe once. `probe` (default: `kvm_probe`) is asked only with /dev/kvm there.
    """
    probe = probe or kvm_probe
    try:
        boot_id = boot_id_file.read_text().strip()
    except OSError as error:
        log.warning("without a boot id the acceleration verdict is not kept: %s", error)
        return decide(kvm_device.exists(), probe)[0]
    verdict_file = state_dir / VERDICT_FILE
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        lock = (state_dir / PROBE_LOCK).open("a")
    except OSError as error:
        log.warning("cannot keep the acceleration verdict in %s: %s", state_dir, error)
        return decide(kvm_device.exists(), probe)[0]
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        known = _remembered(verdict_file, boot_id)
        if known is not None:
            return known
        found, why = decide(kvm_device.exists(), probe)
        log.info("acceleration: %s (%s)", found, why)
        verdict = {"boot_id": boot_id, "acceleration": found, "reason": why}
        partial = verdict_file.with_name(f".{VERDICT_FILE}.partial")
        try:
            partial.write_text(json.dumps(verdict) + "\n")
            partial.replace(verdict_file)
        except OSError as error:
            log.warning("cannot keep the acceleration verdict in %s: %s", state_dir, error)
        return found


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

"""A VM's QEMU process: start it, find it again, power it off, reset it, kill it.

Nothing is kept in memory: a VM's process is found from its pidfile each time, and
QMP is reached through its socket, so an agent that restarts finds every VM as it
left it and never stops or restarts one. A VM is stopped exactly when it has no
process (QEMU exits when the guest powers off; see `argv`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from enum import StrEnum
from itertools import pairwise
from pathlib import Path

from nubis.agent.qemu import QemuError
from nubis.agent.qemu.argv import QEMU, argv
from nubis.agent.qemu.monitor import Monitor, MonitorError
from nubis.agent.qemu.paths import VmPaths
from nubis.protocol import VmSpec

START_TIMEOUT = 30.0
STOP_TIMEOUT = 60.0
"""How long a guest gets to act on the ACPI power button before it is forced off."""
QUIT_TIMEOUT = 5.0
KILL_TIMEOUT = 5.0
_POLL = 0.05
PROC = Path("/proc")


class StopOutcome(StrEnum):
    NOT_RUNNING = "not-running"
    POWERED_OFF = "powered-off"
    """The guest shut down after the ACPI power button."""
    QUIT = "quit"
    """The guest ignored the button; QEMU was told to quit."""
    KILLED = "killed"
    """QEMU did not quit either; it got SIGKILL."""


def start(
    spec: VmSpec,
    paths: VmPaths,
    acceleration: str,
    *,
    sandbox: bool = True,
    timeout: float = START_TIMEOUT,
) -> int:
    """Run `spec`'s QEMU, daemonized, and return its pid; if it runs already, its pid.

    The disk and the seed must exist. QEMU's parent process exits once the VM is set
    up (or could not be), so a failure comes back here with QEMU's own words.
    """
    if spec.id != paths.vm_id:
        raise QemuError(f"the paths of {paths.vm_id} cannot run VM {spec.id}")
    found = pid(paths)
    if found is not None:
        return found
    for needed in (paths.disk, paths.seed):
        if not needed.exists():
            raise QemuError(f"cannot start {spec.id}: {needed} is missing")
    command = argv(spec, paths, acceleration, sandbox=sandbox)
    # A file, not a pipe: the daemon keeps the inherited stderr until it has set up,
    # and a pipe would make us wait on it rather than on the parent.
    with tempfile.TemporaryFile() as stderr:
        try:
            finished = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError:
            raise QemuError(f"cannot start {spec.id}: {QEMU} is not installed") from None
        except subprocess.TimeoutExpired:
            raise QemuError(f"QEMU for {spec.id} did not set up within {timeout:g} s") from None
        stderr.seek(0)
        said = stderr.read().decode(errors="replace").strip()
    if finished.returncode != 0:
        if pid(paths) is None:
            _tidy(paths)
        raise QemuError(
            f"QEMU for {spec.id} did not start: {said or f'exit status {finished.returncode}'}"
        )
    started = pid(paths)
    if started is None:
        raise QemuError(f"QEMU for {spec.id} started but wrote no pidfile at {paths.pidfile}")
    return started


def pid(paths: VmPaths) -> int | None:
    """The pid of this VM's QEMU, if it runs.

    The pidfile alone is not trusted: after a crash or a host reboot it names a pid
    that may since belong to anything. The process must be alive and be the QEMU
    started with this very pidfile and this VM's name.
    """
    try:
        number = int(paths.pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return number if _is_ours(number, paths) else None


def running(paths: VmPaths) -> bool:
    return pid(paths) is not None


def status(paths: VmPaths) -> str | None:
    """QEMU's run state from QMP (`running`, `paused`, ...), or None without a process."""
    if pid(paths) is None:
        return None
    return Monitor(paths.qmp).status()


def powerdown(paths: VmPaths) -> bool:
    """Press the ACPI power button, without waiting; False if there is no process."""
    if pid(paths) is None:
        return False
    Monitor(paths.qmp).powerdown()
    return True


def stop(paths: VmPaths, timeout: float = STOP_TIMEOUT) -> StopOutcome:
    """Power the VM off: ACPI first; after `timeout`, QMP `quit`; then SIGKILL.

    Returns once no process is left, and says how it ended.
    """
    found = pid(paths)
    if found is None:
        _tidy(paths)
        return StopOutcome.NOT_RUNNING
    monitor = Monitor(paths.qmp)
    # A QMP that does not answer must not keep the VM running: go on to the force.
    with contextlib.suppress(MonitorError):
        monitor.powerdown()
    if _gone(found, paths, timeout):
        outcome = StopOutcome.POWERED_OFF
    else:
        with contextlib.suppress(MonitorError):
            monitor.quit()
        if _gone(found, paths, QUIT_TIMEOUT):
            outcome = StopOutcome.QUIT
        else:
            _kill(found, paths)
            outcome = StopOutcome.KILLED
    _tidy(paths)
    return outcome


def reboot(paths: VmPaths) -> None:
    """Reset the VM at once (the guest is not asked)."""
    if pid(paths) is None:
        raise QemuError(f"cannot reboot {paths.vm_id}: it is not running")
    Monitor(paths.qmp).reset()


def kill(paths: VmPaths) -> bool:
    """SIGKILL the VM's QEMU now; False if there was none. Its disk is left as it is."""
    found = pid(paths)
    if found is not None:
        _kill(found, paths)
    _tidy(paths)
    return found is not None


def _kill(found: int, paths: VmPaths) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(found, signal.SIGKILL)
    if not _gone(found, paths, KILL_TIMEOUT):
        raise QemuError(f"QEMU of {paths.vm_id} (pid {found}) survived SIGKILL")


def _is_ours(number: int, paths: VmPaths) -> bool:
    """Whether process `number` is the QEMU of these paths.

    A process that has exited but not been reaped (a zombie) has an empty command
    line, so it counts as gone.
    """
    try:
        raw = (PROC / str(number) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    args = [os.fsdecode(arg) for arg in raw.split(b"\0")]
    return _follows(args, "-pidfile", str(paths.pidfile)) and _follows(
        args, "-name", f"guest={paths.vm_id}"
    )


def _follows(args: list[str], option: str, value: str) -> bool:
    return any(a == option and b == value for a, b in pairwise(args))


def _gone(found: int, paths: VmPaths, within: float) -> bool:
    deadline = time.monotonic() + within
    while _is_ours(found, paths):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL)
    return True


def _tidy(paths: VmPaths) -> None:
    """Remove what a QEMU that is gone may have left: its pidfile and sockets.

    QEMU removes most of them when it exits cleanly, but not after SIGKILL, and
    never the VNC socket; the NICs it was asked to unplug mean nothing to the next
    QEMU. The disk, the seed and the console log stay.
    """
    for leftover in (paths.pidfile, *paths.sockets, paths.unplugging):
        leftover.unlink(missing_ok=True)

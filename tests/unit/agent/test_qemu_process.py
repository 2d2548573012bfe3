"""Finding a VM's QEMU from its pidfile: a pid alone is never taken for the VM."""

from __future__ import annotations

import os
from pathlib import Path

from nubis.agent.qemu import process
from nubis.agent.qemu.paths import VmPaths


def test_a_vm_without_a_pidfile_is_not_running(tmp_path: Path) -> None:
    paths = VmPaths.of(tmp_path, "vm-abc")
    assert process.pid(paths) is None
    assert not process.running(paths)
    assert process.status(paths) is None


def test_a_pidfile_naming_another_process_is_not_the_vm(tmp_path: Path) -> None:
    # After a crash or a host reboot the pid in a stale pidfile may be anyone's.
    paths = VmPaths.of(tmp_path, "vm-abc")
    paths.dir.mkdir()
    paths.pidfile.write_text(f"{os.getpid()}\n")
    assert process.pid(paths) is None


def test_a_pidfile_that_is_not_a_number_is_not_the_vm(tmp_path: Path) -> None:
    paths = VmPaths.of(tmp_path, "vm-abc")
    paths.dir.mkdir()
    paths.pidfile.write_text("")
    assert process.pid(paths) is None


def test_stopping_a_vm_that_does_not_run_tidies_what_a_crash_left(tmp_path: Path) -> None:
    paths = VmPaths.of(tmp_path, "vm-abc")
    paths.dir.mkdir()
    for leftover in (paths.pidfile, paths.qmp, paths.vnc):
        leftover.write_text("1\n")
    paths.serial_log.write_text("the console of the last boot\n")
    assert process.stop(paths, timeout=0) == process.StopOutcome.NOT_RUNNING
    assert sorted(p.name for p in paths.dir.iterdir()) == ["serial.log"]


def test_killing_a_vm_that_does_not_run_is_not_an_error(tmp_path: Path) -> None:
    assert process.kill(VmPaths.of(tmp_path, "vm-abc")) is False

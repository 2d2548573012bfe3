"""Real QEMU guests under TCG: started, found again by a new agent, reset, stopped.

The guest is a blank disk: SeaBIOS finds nothing to boot and idles, which is all a
VM's process lifecycle needs, and it ignores the ACPI power button like a guest
whose OS hangs would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nubis.agent.disk import make_overlay
from nubis.agent.qemu import QemuError, process
from nubis.agent.qemu.argv import QEMU
from nubis.agent.qemu.monitor import Monitor
from nubis.agent.qemu.paths import VmPaths
from nubis.agent.seed import write_seed
from nubis.protocol import VmSpec
from tests.unit.agent.vm_specs import IMAGE_VIRTUAL_SIZE, MIB, vm_spec

TOOLS = (QEMU, "qemu-img", "mkfs.vfat", "mcopy")
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in TOOLS), reason=f"needs {', '.join(TOOLS)}"
    ),
]


@dataclass
class Vm:
    spec: VmSpec
    paths: VmPaths
    root: Path


@pytest.fixture
def vm() -> Iterator[Vm]:
    """A VM ready to start (disk and seed made), killed and removed afterwards."""
    # Not pytest's tmp_path: its long names could push sockets past 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="nubis-e2e-"))
    spec = vm_spec(id=f"vm-e2e-{uuid.uuid4().hex[:12]}", cores=1, memory_bytes=128 * MIB)
    paths = VmPaths.of(root / "vms", spec.id)
    try:
        base = root / "base.qcow2"
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", str(base), str(IMAGE_VIRTUAL_SIZE)],
            check=True,
        )
        make_overlay(base, paths.disk, spec.disk_bytes, IMAGE_VIRTUAL_SIZE)
        write_seed(spec, paths.seed)
        yield Vm(spec, paths, root)
    finally:
        process.kill(paths)
        shutil.rmtree(root)


def gone(number: int) -> bool:
    """No process `number`, or only an unreaped zombie of it."""
    try:
        return Path(f"/proc/{number}/cmdline").read_bytes() == b""
    except FileNotFoundError:
        return True


def test_a_started_vm_runs_with_its_pidfile_qmp_and_console(vm: Vm) -> None:
    number = process.start(vm.spec, vm.paths, "tcg")
    assert int(vm.paths.pidfile.read_text()) == number
    assert process.status(vm.paths) == "running"
    assert vm.paths.serial_log.exists()
    assert all(socket.is_socket() for socket in vm.paths.sockets)


def test_a_restarted_agent_finds_the_running_vm(vm: Vm) -> None:
    number = process.start(vm.spec, vm.paths, "tcg")
    # Another process, as an agent after a restart: nothing but the VM's directory.
    finder = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from nubis.agent.qemu import process\n"
        "from nubis.agent.qemu.paths import VmPaths\n"
        "paths = VmPaths.of(Path(sys.argv[1]), sys.argv[2])\n"
        "print(json.dumps([process.pid(paths), process.status(paths)]))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", finder, str(vm.root / "vms"), vm.spec.id],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(found.stdout) == [number, "running"]
    assert Monitor(VmPaths.of(vm.root / "vms", vm.spec.id).qmp).status() == "running"


def test_starting_a_running_vm_again_leaves_it_as_it_is(vm: Vm) -> None:
    number = process.start(vm.spec, vm.paths, "tcg")
    assert process.start(vm.spec, vm.paths, "tcg") == number
    assert process.status(vm.paths) == "running"


def test_a_reboot_resets_the_vm_in_the_same_process(vm: Vm) -> None:
    number = process.start(vm.spec, vm.paths, "tcg")
    process.reboot(vm.paths)
    assert process.pid(vm.paths) == number
    assert process.status(vm.paths) == "running"


def test_a_guest_that_ignores_the_power_button_is_forced_off(vm: Vm) -> None:
    number = process.start(vm.spec, vm.paths, "tcg")
    began = time.monotonic()
    assert process.stop(vm.paths, timeout=0.5) == process.StopOutcome.QUIT
    assert time.monotonic() - began >= 0.5
    assert gone(number)
    assert process.pid(vm.paths) is None
    assert process.status(vm.paths) is None
    # What the VM is made of, and its console history, stay; its runtime files go.
    names = sorted(path.name for path in vm.paths.dir.iterdir())
    assert names == ["disk.qcow2", "seed.img", "serial.log"]


def test_a_stopped_vm_starts_again(vm: Vm) -> None:
    first = process.start(vm.spec, vm.paths, "tcg")
    process.stop(vm.paths, timeout=0.1)
    second = process.start(vm.spec, vm.paths, "tcg")
    assert second != first
    assert process.status(vm.paths) == "running"


def test_a_killed_vm_leaves_no_process_and_no_runtime_files(vm: Vm) -> None:
    number = process.start(vm.spec, vm.paths, "tcg")
    assert process.kill(vm.paths) is True
    assert gone(number)
    assert not vm.paths.pidfile.exists()
    assert not any(socket.exists() for socket in vm.paths.sockets)


def test_a_vm_that_cannot_start_says_why(vm: Vm) -> None:
    vm.paths.disk.write_bytes(b"not a disk image")
    with pytest.raises(QemuError, match="qcow2"):
        process.start(vm.spec, vm.paths, "tcg")
    assert process.pid(vm.paths) is None
    assert not vm.paths.pidfile.exists()

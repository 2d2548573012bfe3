"""A VM's files: all in one directory named after it, sockets short enough to bind."""

from __future__ import annotations

from pathlib import Path

import pytest

from nubis.agent.qemu import QemuError
from nubis.agent.qemu.paths import SOCKET_PATH_MAX, VmPaths, vm_ids


def test_every_file_of_a_vm_is_in_its_own_directory(tmp_path: Path) -> None:
    paths = VmPaths.of(tmp_path, "vm-abc")
    files = [
        paths.disk,
        paths.seed,
        paths.pidfile,
        paths.qmp,
        paths.serial_log,
        paths.serial_socket,
        paths.vnc,
    ]
    assert {file.parent for file in files} == {tmp_path / "vm-abc"}
    assert len({file.name for file in files}) == len(files)


def test_a_relative_root_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # QEMU changes to / when it daemonizes; a relative pidfile name would then be wrong.
    monkeypatch.chdir(tmp_path)
    assert VmPaths.of(Path("vms"), "vm-abc").pidfile == tmp_path / "vms" / "vm-abc" / "qemu.pid"


@pytest.mark.parametrize("vm_id", ["", "..", ".hidden", "a/b", "a,b", "a b", "x" * 65])
def test_an_id_that_cannot_be_a_directory_name_is_refused(tmp_path: Path, vm_id: str) -> None:
    with pytest.raises(QemuError, match="cannot name a VM directory"):
        VmPaths.of(tmp_path, vm_id)


def test_a_root_too_long_for_a_socket_address_is_refused() -> None:
    root = Path("/" + "r" * (SOCKET_PATH_MAX - len("/vm-abc/serial.sock")))
    with pytest.raises(QemuError, match=r"serial\.sock is 108 bytes"):
        VmPaths.of(root, "vm-abc")


def test_the_longest_root_that_fits_is_accepted() -> None:
    root = Path("/" + "r" * (SOCKET_PATH_MAX - len("/vm-abc/serial.sock") - 1))
    assert len(str(VmPaths.of(root, "vm-abc").serial_socket)) == SOCKET_PATH_MAX


def test_the_vms_on_a_host_are_its_vm_directories(tmp_path: Path) -> None:
    for vm_id in ("vm-b", "vm-a"):
        (tmp_path / vm_id).mkdir()
    (tmp_path / "base.qcow2").write_bytes(b"")
    (tmp_path / ".partial").mkdir()
    assert vm_ids(tmp_path) == ["vm-a", "vm-b"]
    assert vm_ids(tmp_path / "missing") == []

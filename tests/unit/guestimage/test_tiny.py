"""What goes into the tiny guest's initramfs, taken from unpacked package trees."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from nubis.guestimage import BuildError, guest, tiny
from tests.unit.guestimage.elf import kernel_module, program

LOADER = "/lib64/ld-linux-x86-64.so.2"


def _put(root: Path, name: str, data: bytes) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o755)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Unpacked packages laid out as Debian's: the loader reached by an absolute link,
    libraries under their sonames as relative links, a library that needs another."""
    root = tmp_path / "user"
    _put(root, "usr/sbin/dropbear", program(LOADER, ["libtomcrypt.so.1", "libc.so.6"]))
    _put(root, "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", program(None, []))
    (root / "lib64").mkdir()
    (root / "lib64/ld-linux-x86-64.so.2").symlink_to("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    _put(root, "lib/x86_64-linux-gnu/libc.so.6", program(LOADER, []))
    _put(root, "usr/lib/x86_64-linux-gnu/libtomcrypt.so.1.0.1", program(None, ["libgmp.so.10"]))
    os.symlink("libtomcrypt.so.1.0.1", root / "usr/lib/x86_64-linux-gnu/libtomcrypt.so.1")
    _put(root, "usr/lib/x86_64-linux-gnu/libgmp.so.10", program(None, ["libc.so.6"]))
    _put(root, "usr/lib/x86_64-linux-gnu/libunused.so.1", program(None, []))
    return root


def test_a_program_comes_with_its_loader_and_every_library_it_needs(tree: Path) -> None:
    entries = tiny.program_entries(tree, ["usr/sbin/dropbear"])
    assert sorted(entries) == [
        "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        "lib/x86_64-linux-gnu/libc.so.6",
        "lib64/ld-linux-x86-64.so.2",
        "usr/lib/x86_64-linux-gnu/libgmp.so.10",
        "usr/lib/x86_64-linux-gnu/libtomcrypt.so.1",
        "usr/lib/x86_64-linux-gnu/libtomcrypt.so.1.0.1",
        "usr/sbin/dropbear",
    ]
    link = entries["lib64/ld-linux-x86-64.so.2"]
    assert stat.S_ISLNK(link.mode)
    assert link.data == b"/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    assert entries["usr/lib/x86_64-linux-gnu/libtomcrypt.so.1"].data == b"libtomcrypt.so.1.0.1"
    assert entries["usr/sbin/dropbear"].mode == stat.S_IFREG | 0o755


def test_a_library_no_package_holds_is_an_error(tree: Path) -> None:
    (tree / "usr/lib/x86_64-linux-gnu/libgmp.so.10").unlink()
    with pytest.raises(BuildError, match=r"libgmp\.so\.10"):
        tiny.program_entries(tree, ["usr/sbin/dropbear"])


def _kernel(tmp_path: Path, depends: dict[str, list[str]]) -> Path:
    root = tmp_path / "kernel"
    for name, needs in depends.items():
        _put(root, f"lib/modules/6.1.0-9-amd64/kernel/x/{name.replace('_', '-')}.ko",
             kernel_module(name, needs))  # fmt: skip
    return root


def test_modules_are_taken_with_their_dependencies_in_load_order(tmp_path: Path) -> None:
    root = _kernel(
        tmp_path,
        {"virtio_ring": [], "virtio": ["virtio_ring"], "virtio_blk": ["virtio", "virtio_ring"],
         "unused": []},
    )  # fmt: skip
    order, entries = tiny.module_entries(root, ["virtio_blk"])
    assert order == ["virtio_ring", "virtio", "virtio_blk"]
    assert [entry.name for entry in entries] == [f"{guest.MODULE_DIR}/{name}.ko" for name in order]


def test_a_module_the_kernel_package_lacks_is_an_error(tmp_path: Path) -> None:
    root = _kernel(tmp_path, {"virtio": ["virtio_ring"]})
    with pytest.raises(BuildError, match="no module virtio_ring"):
        tiny.module_entries(root, ["virtio"])
    with pytest.raises(BuildError, match="no module vfat"):
        tiny.module_entries(root, ["vfat"])


def test_the_initramfs_has_an_init_a_console_and_busybox_as_the_shell(tree: Path) -> None:
    programs = tiny.program_entries(tree, ["usr/sbin/dropbear"])
    entries = {
        entry.name: entry for entry in tiny.initramfs_entries(["virtio"], [], b"busybox", programs)
    }
    assert entries["init"].mode == stat.S_IFREG | 0o755
    assert entries["init"].data == guest.init_script(["virtio"]).encode()
    assert entries["bin/sh"].data == b"busybox"
    assert entries["dev/console"].rdev == (5, 1)
    assert entries["etc/acpi/PWRF/00000080"].mode == stat.S_IFREG | 0o755
    assert entries["root"].mode == stat.S_IFDIR | 0o700
    assert "usr/sbin/dropbear" in entries


def test_the_initramfs_carries_the_nic_scripts_and_mdev_s_rules(tree: Path) -> None:
    entries = {entry.name: entry for entry in tiny.initramfs_entries(["virtio"], [], b"bb", {})}
    assert entries[guest.HOTPLUG_FILE].mode == stat.S_IFREG | 0o755
    assert entries[guest.NETWORK_FILE].data == guest.network_functions().encode()
    assert entries["etc/mdev.conf"].data == guest.MDEV_CONF.encode()


def test_an_extra_package_s_programs_are_the_elf_files_in_its_bin_dirs(tmp_path: Path) -> None:
    root = tmp_path / "radvd"
    _put(root, "usr/sbin/radvd", program(LOADER, ["libc.so.6"]))
    _put(root, "usr/sbin/radvdump", program(LOADER, ["libc.so.6"]))
    _put(root, "usr/sbin/helper.sh", b"#!/bin/sh\n")
    _put(root, "usr/lib/x86_64-linux-gnu/libradvd.so.1", program(None, []))
    _put(root, "etc/init.d/radvd", b"#!/bin/sh\n")
    (root / "bin").mkdir()
    (root / "bin/radvd").symlink_to("/usr/sbin/radvd")
    assert tiny.package_programs(root) == ["usr/sbin/radvd", "usr/sbin/radvdump"]

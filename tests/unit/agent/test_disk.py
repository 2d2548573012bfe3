"""A VM's disk: an overlay of its base image, at least the image's size, made once."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from nubis.agent import disk
from nubis.agent.disk import DiskError, make_overlay, overlay_size

MIB = 1024 * 1024
needs_qemu_img = pytest.mark.skipif(not shutil.which("qemu-img"), reason="needs qemu-img")


def test_the_overlay_has_the_size_asked_for() -> None:
    assert overlay_size(1024 * MIB, 64 * MIB) == 1024 * MIB


def test_the_overlay_is_never_smaller_than_the_image() -> None:
    assert overlay_size(MIB, 64 * MIB) == 64 * MIB


def test_the_overlay_size_is_whole_sectors() -> None:
    assert overlay_size(MIB + 1, MIB) == MIB + 512


@pytest.fixture
def base(tmp_path: Path) -> Path:
    path = tmp_path / "images" / "base.qcow2"
    path.parent.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    return path


@needs_qemu_img
def test_a_disk_is_an_overlay_of_the_base_grown_to_the_size(base: Path, tmp_path: Path) -> None:
    path = make_overlay(base, tmp_path / "vm" / "disk.qcow2", 1024 * MIB, 64 * MIB)
    described = disk.info(path)
    assert described["format"] == "qcow2"
    assert described["virtual-size"] == 1024 * MIB
    assert disk.backing_file(path) == str(base)
    assert sorted(p.name for p in path.parent.iterdir()) == ["disk.qcow2"]


@needs_qemu_img
def test_a_disk_that_exists_is_left_as_it_is(base: Path, tmp_path: Path) -> None:
    path = make_overlay(base, tmp_path / "disk.qcow2", 1024 * MIB, 64 * MIB)
    before = path.stat()
    make_overlay(base, path, 2048 * MIB, 64 * MIB)
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@needs_qemu_img
def test_a_disk_on_another_base_is_refused_and_kept(base: Path, tmp_path: Path) -> None:
    path = make_overlay(base, tmp_path / "disk.qcow2", 1024 * MIB, 64 * MIB)
    other = tmp_path / "other.qcow2"
    shutil.copy(base, other)
    with pytest.raises(DiskError, match="not of"):
        make_overlay(other, path, 1024 * MIB, 64 * MIB)
    assert disk.backing_file(path) == str(base)


@needs_qemu_img
def test_a_missing_base_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DiskError, match="is missing"):
        make_overlay(tmp_path / "nothing.qcow2", tmp_path / "disk.qcow2", MIB, MIB)
    assert not (tmp_path / "disk.qcow2").exists()


@needs_qemu_img
def test_a_half_made_disk_is_replaced(base: Path, tmp_path: Path) -> None:
    (tmp_path / "disk.qcow2.partial").write_bytes(b"interrupted")
    path = make_overlay(base, tmp_path / "disk.qcow2", 1024 * MIB, 64 * MIB)
    assert disk.backing_file(path) == str(base)
    assert not (tmp_path / "disk.qcow2.partial").exists()


@needs_qemu_img
def test_removing_a_disk_removes_it_and_is_idempotent(base: Path, tmp_path: Path) -> None:
    path = make_overlay(base, tmp_path / "disk.qcow2", 1024 * MIB, 64 * MIB)
    disk.remove(path)
    disk.remove(path)
    assert not path.exists()
    assert base.exists()


def test_a_failing_tool_says_what_it_said(tmp_path: Path) -> None:
    with pytest.raises(DiskError, match="No such file"):
        disk.info(tmp_path / "nothing.qcow2")


@needs_qemu_img
def test_an_overlay_records_that_its_base_is_a_qcow2(base: Path, tmp_path: Path) -> None:
    # QEMU opens the base as the format the overlay records, so it never probes it.
    path = make_overlay(base, tmp_path / "disk.qcow2", 1024 * MIB, 64 * MIB)
    assert disk.info(path)["backing-filename-format"] == "qcow2"


@needs_qemu_img
def test_a_disk_is_read_as_qcow2_only_never_probed(tmp_path: Path) -> None:
    raw = tmp_path / "disk.qcow2"
    raw.write_bytes(b"\0" * 65536)
    with pytest.raises(DiskError, match="Image is not in qcow2 format"):
        disk.info(raw)

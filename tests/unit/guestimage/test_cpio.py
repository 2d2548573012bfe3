"""The newc cpio writer the initramfs is made with."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from nubis.guestimage.cpio import MAGIC, CpioError, Entry, archive, read

ENTRIES = [
    Entry.file("init", b"#!/bin/sh\necho hello\n", 0o755),
    Entry.file("etc/passwd", b"root:*:0:0:root:/root:/bin/sh\n"),
    Entry.symlink("bin/sh", "busybox"),
    Entry.file("bin/busybox", b"\x7fELF" + bytes(1001), 0o755),
    Entry.char_device("dev/console", 5, 1),
    Entry.directory("root", 0o700),
]


def test_an_archive_reads_back_as_its_entries_sorted_with_their_parent_directories() -> None:
    entries = read(archive(ENTRIES, mtime=1234))
    assert [entry.name for entry in entries] == [
        "bin", "bin/busybox", "bin/sh", "dev", "dev/console", "etc", "etc/passwd", "init", "root",
    ]  # fmt: skip
    by_name = {entry.name: entry for entry in entries}
    assert by_name["init"].data == b"#!/bin/sh\necho hello\n"
    assert by_name["init"].mode == stat.S_IFREG | 0o755
    assert by_name["bin/sh"].mode == stat.S_IFLNK | 0o777
    assert by_name["bin/sh"].data == b"busybox"
    assert by_name["dev/console"].rdev == (5, 1)
    assert stat.S_ISCHR(by_name["dev/console"].mode)
    assert by_name["etc"].mode == stat.S_IFDIR | 0o755
    assert by_name["root"].mode == stat.S_IFDIR | 0o700
    assert {entry.mtime for entry in entries} == {1234}


def test_the_same_files_make_the_same_bytes_in_any_order() -> None:
    assert archive(ENTRIES) == archive(list(reversed(ENTRIES)))
    assert archive(ENTRIES, mtime=1) != archive(ENTRIES, mtime=2)


def test_headers_are_newc_owned_by_root_and_aligned_to_four_bytes() -> None:
    data = archive(ENTRIES)
    assert data.startswith(MAGIC)
    assert len(data) % 4 == 0
    offset = 0
    for _ in range(len(read(data)) + 1):
        assert data[offset : offset + 6] == MAGIC
        uid, gid = (int(data[offset + 6 + 8 * i : offset + 14 + 8 * i], 16) for i in (2, 3))
        assert (uid, gid) == (0, 0)
        size, name_size = (int(data[offset + 6 + 8 * i : offset + 14 + 8 * i], 16) for i in (6, 11))
        offset += 110 + name_size
        offset += -offset % 4
        offset += size + (-size % 4)
    assert offset == len(data)
    assert data.endswith(b"TRAILER!!!\0\0\0\0")


def test_names_that_leave_the_archive_or_repeat_are_refused() -> None:
    for bad in ("../etc/passwd", "a/../../b", "", "/"):
        with pytest.raises(CpioError):
            archive([Entry.file(bad, b"")])
    with pytest.raises(CpioError, match="twice"):
        archive([Entry.file("a", b"1"), Entry.file("./a", b"2")])
    with pytest.raises(CpioError, match="contents"):
        archive([Entry(name="d", mode=stat.S_IFDIR | 0o755, data=b"x")])


def test_a_cut_archive_is_an_error() -> None:
    data = archive(ENTRIES)
    with pytest.raises(CpioError):
        read(data[:200])
    with pytest.raises(CpioError):
        read(b"not an archive at all, but long enough to hold a header " * 3)


@pytest.mark.skipif(not shutil.which("cpio"), reason="needs the cpio tool")
def test_gnu_cpio_extracts_the_files_and_links(tmp_path: Path) -> None:
    files = [entry for entry in ENTRIES if not stat.S_ISCHR(entry.mode)]
    subprocess.run(
        ["cpio", "-i", "-d", "-m", "--quiet", "--no-absolute-filenames"],
        input=archive(files, mtime=1_600_000_000),
        cwd=tmp_path,
        check=True,
    )
    assert (tmp_path / "init").read_bytes() == b"#!/bin/sh\necho hello\n"
    assert stat.S_IMODE((tmp_path / "init").stat().st_mode) == 0o755
    assert (tmp_path / "bin" / "sh").readlink() == Path("busybox")
    assert (tmp_path / "bin" / "busybox").stat().st_size == 1005
    assert (tmp_path / "etc" / "passwd").stat().st_mtime == 1_600_000_000
    assert stat.S_IMODE((tmp_path / "root").stat().st_mode) == 0o700

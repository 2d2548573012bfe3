"""The `newc` cpio archive, the format the kernel unpacks an initramfs from.

Written for reproducibility: every entry has owner 0:0, one fixed mtime, an inode
number given by its position, and the entries go out sorted by name, so the same
files always make the same bytes. Parent directories an archive lacks are added
(the kernel creates each entry as it reads it, so a directory must come first).
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from dataclasses import dataclass, replace

MAGIC = b"070701"
TRAILER = "TRAILER!!!"
_FIELDS = 13
_HEADER = len(MAGIC) + 8 * _FIELDS


class CpioError(ValueError):
    """An archive that cannot be written or read as newc."""


@dataclass(frozen=True)
class Entry:
    """One file of an archive. `name` is relative (`bin/sh`, no leading slash)."""

    name: str
    mode: int
    """The file type bits and the permissions, as in `st_mode`."""
    data: bytes = b""
    """A regular file's contents, or a symbolic link's target."""
    rdev: tuple[int, int] = (0, 0)
    """A device node's major and minor number."""
    mtime: int = 0

    @classmethod
    def file(cls, name: str, data: bytes, permissions: int = 0o644) -> Entry:
        return cls(name, stat.S_IFREG | permissions, data)

    @classmethod
    def directory(cls, name: str, permissions: int = 0o755) -> Entry:
        return cls(name, stat.S_IFDIR | permissions)

    @classmethod
    def symlink(cls, name: str, target: str) -> Entry:
        return cls(name, stat.S_IFLNK | 0o777, target.encode())

    @classmethod
    def char_device(cls, name: str, major: int, minor: int, permissions: int = 0o600) -> Entry:
        return cls(name, stat.S_IFCHR | permissions, rdev=(major, minor))


def _normal(name: str) -> str:
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        raise CpioError(f"{name!r} cannot name a file in an archive")
    return "/".join(parts)


def complete(entries: Iterable[Entry]) -> list[Entry]:
    """The entries with normal names, sorted, with the directories they lack added;
    two entries of one name are an error."""
    by_name: dict[str, Entry] = {}
    for entry in entries:
        name = _normal(entry.name)
        if name in by_name:
            raise CpioError(f"{name} is in the archive twice")
        by_name[name] = replace(entry, name=name)
    for name in list(by_name):
        parent = name.rpartition("/")[0]
        while parent and parent not in by_name:
            by_name[parent] = Entry.directory(parent)
            parent = parent.rpartition("/")[0]
    return [by_name[name] for name in sorted(by_name)]


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


def _header(
    inode: int, mode: int, size: int, *, rdev: tuple[int, int], name_size: int, mtime: int
) -> bytes:
    nlink = 2 if stat.S_ISDIR(mode) else 1
    fields = (inode, mode, 0, 0, nlink, mtime, size, 0, 0, rdev[0], rdev[1], name_size, 0)
    return MAGIC + b"".join(b"%08X" % field for field in fields)


def archive(entries: Iterable[Entry], *, mtime: int = 0) -> bytes:
    """The newc archive of `entries` (see `complete`), every mtime set to `mtime`."""
    out = bytearray()
    for inode, entry in enumerate(complete(entries), start=1):
        name = entry.name.encode() + b"\0"
        kind = stat.S_IFMT(entry.mode)
        if entry.data and kind not in (stat.S_IFREG, stat.S_IFLNK):
            raise CpioError(f"{entry.name}: only files and links have contents")
        out += _header(
            inode, entry.mode, len(entry.data), rdev=entry.rdev, name_size=len(name), mtime=mtime
        )
        out += name + _pad(_HEADER + len(name))
        out += entry.data + _pad(len(entry.data))
    trailer = TRAILER.encode() + b"\0"
    out += (
        _header(0, 0, 0, rdev=(0, 0), name_size=len(trailer), mtime=0)
        + trailer
        + _pad(_HEADER + len(trailer))
    )
    return bytes(out)


def read(data: bytes) -> list[Entry]:
    """The entries of a newc archive, in archive order, up to its trailer."""
    entries: list[Entry] = []
    offset = 0
    while True:
        header = data[offset : offset + _HEADER]
        if len(header) < _HEADER or header[:6] != MAGIC:
            raise CpioError(f"no newc header at byte {offset}")
        try:
            fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(_FIELDS)]
        except ValueError:
            raise CpioError(f"a malformed newc header at byte {offset}") from None
        mode, mtime, size = fields[1], fields[5], fields[6]
        rdev, name_size = (fields[9], fields[10]), fields[11]
        start = offset + _HEADER
        name = data[start : start + name_size - 1].decode()
        offset = start + name_size
        offset += -offset % 4
        if name == TRAILER:
            return entries
        contents = data[offset : offset + size]
        if len(contents) != size:
            raise CpioError(f"{name} is cut short")
        offset += size + (-size % 4)
        entries.append(Entry(name, mode, contents, rdev, mtime))

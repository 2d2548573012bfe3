"""What the tiny guest's files need, read from the files themselves: the loader and
shared libraries of an ELF program (`elf_facts`), the dependencies of a kernel module
(`module_info`). The kernel package ships no modules.dep (depmod makes it at install
time), and the building machine need not have kmod or binutils.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from nubis.guestimage import BuildError

# ELF, as far as the tiny guest needs it: 64-bit little-endian (x86-64) only.
_PT_LOAD, _PT_DYNAMIC, _PT_INTERP = 1, 2, 3
_DT_NULL, _DT_NEEDED, _DT_STRTAB = 0, 1, 5


@dataclass(frozen=True)
class ElfFacts:
    interpreter: str | None
    """The program loader it names (PT_INTERP), if it is linked dynamically."""
    needed: tuple[str, ...]
    """The sonames of the shared libraries it needs (DT_NEEDED)."""


def _check_elf(data: bytes) -> None:
    if data[:4] != b"\x7fELF" or data[4:6] != b"\x02\x01":
        raise BuildError("not a 64-bit little-endian ELF file")


def _string(data: bytes, offset: int) -> str:
    end = data.index(b"\0", offset)
    return data[offset:end].decode()


@contextlib.contextmanager
def _reading_elf() -> Iterator[None]:
    try:
        yield
    except (struct.error, IndexError, ValueError, UnicodeDecodeError):
        raise BuildError("a malformed ELF file") from None


def elf_facts(data: bytes) -> ElfFacts:
    """What a program or shared library needs to run."""
    _check_elf(data)
    with _reading_elf():
        return _elf_facts(data)


def _elf_facts(data: bytes) -> ElfFacts:
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    segments = [
        struct.unpack_from("<IIQQQQ", data, phoff + index * phentsize) for index in range(phnum)
    ]
    interpreter = None
    dynamic: list[tuple[int, int]] = []
    for kind, _flags, offset, _vaddr, _paddr, size in segments:
        if kind == _PT_INTERP:
            interpreter = data[offset : offset + size].rstrip(b"\0").decode()
        elif kind == _PT_DYNAMIC:
            for at in range(offset, offset + size, 16):
                tag, value = struct.unpack_from("<qQ", data, at)
                if tag == _DT_NULL:
                    break
                dynamic.append((tag, value))
    strtab = next((value for tag, value in dynamic if tag == _DT_STRTAB), None)
    if strtab is None:
        return ElfFacts(interpreter, ())

    def file_offset(address: int) -> int:
        for kind, _flags, offset, vaddr, _paddr, size in segments:
            if kind == _PT_LOAD and vaddr <= address < vaddr + size:
                return int(address - vaddr + offset)
        raise BuildError(f"no segment holds address {address:#x}")

    base = file_offset(strtab)
    needed = tuple(_string(data, base + value) for tag, value in dynamic if tag == _DT_NEEDED)
    return ElfFacts(interpreter, needed)


def _section(data: bytes, wanted: str) -> bytes | None:
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    if shstrndx >= shnum:
        return None
    headers = [
        struct.unpack_from("<IIQQQQ", data, shoff + index * shentsize) for index in range(shnum)
    ]
    names = headers[shstrndx][4]
    for name, _kind, _flags, _addr, offset, size in headers:
        if _string(data, names + name) == wanted:
            return data[offset : offset + size]
    return None


def module_info(data: bytes) -> dict[str, str]:
    """A kernel module's `.modinfo` (name, depends, ...), as modinfo(8) shows it."""
    _check_elf(data)
    with _reading_elf():
        section = _section(data, ".modinfo")
    if section is None:
        raise BuildError("not a kernel module: it has no .modinfo section")
    info: dict[str, str] = {}
    for item in section.split(b"\0"):
        key, sep, value = item.decode(errors="replace").partition("=")
        if sep and key not in info:
            info[key] = value
    return info


def module_depends(data: bytes) -> tuple[str, ...]:
    return tuple(name for name in module_info(data).get("depends", "").split(",") if name)

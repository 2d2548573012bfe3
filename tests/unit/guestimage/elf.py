"""Minimal ELF files for tests: a kernel module is a relocatable ELF whose `.modinfo`
section holds `key=value` strings."""

from __future__ import annotations

import struct

_HEADER = 64
_SECTION = 64


def kernel_module(name: str, depends: list[str]) -> bytes:
    """A stand-in .ko: an ELF64 with a `.modinfo` and a section name table, no code."""
    modinfo = b"".join(
        f"{item}\0".encode()
        for item in ("license=GPL", f"depends={','.join(depends)}", f"name={name}")
    )
    names = b"\0.modinfo\0.shstrtab\0"
    modinfo_at = _HEADER
    names_at = modinfo_at + len(modinfo)
    sections_at = names_at + len(names)
    header = (
        b"\x7fELF\x02\x01\x01" + bytes(9)
        + struct.pack("<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, sections_at, 0, _HEADER, 0, 0,
                      _SECTION, 3, 2)
    )  # fmt: skip
    sections = bytes(_SECTION)
    sections += struct.pack("<IIQQQQIIQQ", 1, 1, 0, 0, modinfo_at, len(modinfo), 0, 0, 1, 0)
    sections += struct.pack("<IIQQQQIIQQ", 10, 3, 0, 0, names_at, len(names), 0, 0, 1, 0)
    return header + modinfo + names + sections


def program(interpreter: str | None, needed: list[str]) -> bytes:
    """A stand-in program or shared library: one segment loaded at address 0 (so an
    address is its file offset), the loader it names and the libraries it needs."""
    strings = b"\0" + b"".join(f"{name}\0".encode() for name in needed)
    interp = interpreter.encode() + b"\0" if interpreter else b""
    segments = 3 if interpreter else 2
    strtab_at = _HEADER + 56 * segments
    interp_at = strtab_at + len(strings)
    dynamic_at = interp_at + len(interp)
    dynamic = b""
    offset = 1
    for name in needed:
        dynamic += struct.pack("<qQ", 1, offset)
        offset += len(name) + 1
    dynamic += struct.pack("<qQ", 5, strtab_at) + struct.pack("<qQ", 0, 0)
    end = dynamic_at + len(dynamic)
    header = (
        b"\x7fELF\x02\x01\x01" + bytes(9)
        + struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, _HEADER, 0, 0, _HEADER, 56, segments,
                      _SECTION, 0, 0)
    )  # fmt: skip
    table = struct.pack("<IIQQQQQQ", 1, 5, 0, 0, 0, end, end, 4096)
    table += struct.pack("<IIQQQQQQ", 2, 6, dynamic_at, dynamic_at, dynamic_at,
                         len(dynamic), len(dynamic), 8)  # fmt: skip
    if interpreter:
        table += struct.pack("<IIQQQQQQ", 3, 4, interp_at, interp_at, interp_at,
                             len(interp), len(interp), 1)  # fmt: skip
    return header + table + strings + interp + dynamic
